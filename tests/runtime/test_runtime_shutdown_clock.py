"""The shutdown grace is measured on the monotonic clock: a wall clock stepped back while
the relay stops must not stretch the drainers' grace by the step. Real journal file."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from relay.core.delivery import Delivered, Delivery, DrainPolicy, Outcome
from relay.journal import Journal
from relay.runtime.drainer import Drainer
from relay.runtime.supervisor import RelayService
from tests.pipeline.test_pipeline_journal import mail, to
from tests.support import eventually

HOUR = 3600.0


class Wall:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


class HangingSink:
    """Holds every attempt until ``release`` is set."""

    name = "hung"
    connected = True

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = 0

    async def send(self, delivery: Delivery) -> Outcome:
        self.started += 1
        await self.release.wait()
        return Delivered()


class SteppingListener:
    """A listener whose stop() is when the wall clock goes back an hour."""

    tenant = "acme"

    def __init__(self, wall: Wall) -> None:
        self.wall = wall
        self._stopped = asyncio.Event()

    async def run(self) -> None:
        await self._stopped.wait()

    def stop(self) -> None:
        self.wall.offset -= HOUR
        self._stopped.set()

    def crashed(self, reason: str) -> None:
        raise AssertionError(reason)


async def test_a_step_back_during_shutdown_does_not_stretch_the_grace(tmp_path: Path) -> None:
    wall = Wall()
    sink = HangingSink()
    async with Journal(tmp_path / "j.sqlite3") as journal:
        await journal.append("acme", [mail(0)], route=to("hung"))
        service = RelayService(
            journal=journal,
            listeners=[SteppingListener(wall)],  # type: ignore[list-item]
            drainers=[Drainer(journal, sink, DrainPolicy())],  # type: ignore[arg-type]
            shutdown_timeout=0.3,
            clock=wall,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(stop))
        try:
            await eventually(lambda: sink.started == 1, seconds=10, what="an attempt in flight")
            stop.set()
            await eventually(task.done, seconds=10, what="shutdown within its grace")
            await task
        finally:
            sink.release.set()
            await asyncio.wait([task], timeout=5)
        assert len(await journal.claim("hung", limit=10)) == 1  # cancelled: still pending
