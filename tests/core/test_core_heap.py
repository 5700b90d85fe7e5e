"""relay.runtime.heap: the heap is frozen once start-up settles, not before. No I/O."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from relay.runtime.heap import freeze_after_start
from tests.support import eventually


@dataclass
class Status:
    state: str = "starting"
    ver: int | None = None


@dataclass
class FakeListener:
    """Counts how often its status is looked at: each look is one poll of the freezer."""

    _status: Status = field(default_factory=Status)
    looks: int = 0

    @property
    def status(self) -> Status:
        self.looks += 1
        return self._status


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the test process must not keep a frozen heap


@pytest.mark.usefixtures("unfrozen")
async def test_freezes_only_after_every_listener_is_past_start_up() -> None:
    listeners = [FakeListener(), FakeListener(Status("connected", 7)), FakeListener()]
    task = asyncio.create_task(freeze_after_start(listeners, settle_limit=10, poll=0.01))
    # Three polls that each found the first listener still starting.
    await eventually(lambda: listeners[0].looks >= 3, seconds=5, what="three polls")
    assert not task.done(), "one listener is still starting"
    assert gc.get_freeze_count() == 0
    listeners[0].status.state = "backoff"  # left "starting", whatever the outcome
    seen = listeners[2].looks
    # Three more polls that got past the first two and found the third still starting.
    await eventually(lambda: listeners[2].looks >= seen + 3, seconds=5, what="three polls")
    assert not task.done(), "the third is still bootstrapping"
    listeners[2].status.ver = 3  # bootstrapped: its first listen is held now
    frozen = await asyncio.wait_for(task, 5)
    assert frozen > 0
    assert gc.get_freeze_count() > 0


@pytest.mark.usefixtures("unfrozen")
async def test_freezes_after_the_settle_limit_even_if_a_listener_hangs() -> None:
    frozen = await asyncio.wait_for(
        freeze_after_start([FakeListener()], settle_limit=0.05, poll=0.01), 5
    )
    assert frozen > 0
    assert gc.get_freeze_count() > 0
