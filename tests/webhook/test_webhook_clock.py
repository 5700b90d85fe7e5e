"""Retries against a stepped wall clock: a real drainer, a real journal file and a real
loopback receiver; only the drainer's wall clock is the test's, and the test steps it.

Retries a drainer scheduled itself wait on the monotonic clock, whatever the wall clock
does; rows stamped by an earlier run (a restart) are read against the wall clock,
bounded by the sink's longest retry delay (``relay.runtime.clock``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from relay.app.settings import WebhookSettings
from relay.app.wiring import SinkPlan, open_webhooks
from relay.core.delivery import Delivery
from relay.core.events import Event
from relay.core.routing import Router
from relay.journal import Journal
from relay.runtime.drainer import Drainer
from tests.support import eventually
from tests.webhook.conftest import Answer, Receiver, hook, mail

HOUR = 3600.0


class Wall:
    """The real wall clock plus an offset the test steps."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def __call__(self) -> float:
        return time.time() + self.offset


@contextlib.asynccontextmanager
async def webhook(path: Path, settings: WebhookSettings) -> AsyncIterator[tuple[Journal, SinkPlan]]:
    async with Journal(path) as journal, open_webhooks([settings]) as plans:
        yield journal, plans[0]


@contextlib.asynccontextmanager
async def draining(journal: Journal, plan: SinkPlan, wall: Wall) -> AsyncIterator[Drainer]:
    """A drainer on ``wall``, without jitter (``rand`` pinned to the middle)."""
    drainer = Drainer(journal, plan.sink, plan.policy, clock=wall, rand=lambda: 0.5)
    task = asyncio.create_task(drainer.run())
    try:
        yield drainer
    finally:
        await drainer.stop(0.5)
        await task


async def append(journal: Journal, plan: SinkPlan, *events: Event) -> None:
    await journal.append("acme", list(events), route=Router((plan.route,)))


async def pending(journal: Journal, plan: SinkPlan, event: Event) -> Delivery | None:
    """``event``'s row for the sink while it is pending (None once settled otherwise)."""
    rows = await journal.claim(plan.sink.name, limit=100, due_only=False)
    return next((row for row in rows if row.event_id == event.id), None)


async def retry_stamped(journal: Journal, plan: SinkPlan, event: Event, attempts: int) -> Delivery:
    """Wait until ``event``'s ``attempts``-th failure is recorded with its retry time."""

    async def stamped() -> Delivery | None:
        row = await pending(journal, plan, event)
        return row if row is not None and row.attempts == attempts else None

    return await eventually(stamped, seconds=10, what=f"attempt {attempts} of {event.id} recorded")


def sent(receiver: Receiver, path: str, event: Event) -> list[int]:
    """The statuses the receiver answered to ``event``'s requests, in order."""
    return [r.status for r in receiver.to(path) if r.headers["webhook-id"] == event.id]


async def test_a_retry_due_in_3s_goes_out_after_the_wall_clock_steps_back_an_hour(
    receiver: Receiver, journal_path: Path
) -> None:
    """The issue's case: the retry is stamped 3 s out, then the wall clock goes back an
    hour. Waiting on the wall clock, it went out an hour late."""
    receiver.script("back", Answer(500))
    wall = Wall()
    settings = hook(receiver, "back", retry_schedule=[3.0])
    async with webhook(journal_path, settings) as (j, plan), draining(j, plan, wall):
        event = mail()
        await append(j, plan, event)
        await retry_stamped(j, plan, event, attempts=1)
        wall.offset -= HOUR
        await eventually(
            lambda: sent(receiver, "back", event) == [500, 200],
            seconds=10,
            what="the retry delivered within a few seconds of its due time",
        )


@pytest.mark.parametrize("ordered", [False, True], ids=["unordered", "ordered"])
async def test_a_retry_stamped_before_a_restart_is_not_held_by_a_step_back(
    receiver: Receiver, journal_path: Path, ordered: bool
) -> None:
    """The first run stamps a retry 3 s out; the next run starts after the wall clock
    went back an hour. The stamp lies beyond the longest retry delay (3 s), so the row
    is due now, not in an hour (an ordered sink looks at its head the same way)."""
    receiver.script("restart", Answer(500))
    settings = hook(receiver, "restart", retry_schedule=[3.0], ordered=ordered)
    async with webhook(journal_path, settings) as (j, plan):
        event = mail()
        async with draining(j, plan, Wall()):
            await append(j, plan, event)
            await retry_stamped(j, plan, event, attempts=1)
        async with draining(j, plan, Wall(-HOUR)):
            await eventually(
                lambda: sent(receiver, "restart", event) == [500, 200],
                seconds=10,
                what="the retry stamped before the restart delivered",
            )


async def test_a_step_forward_retries_nothing_early_while_running_and_once_after_a_restart(
    receiver: Receiver, journal_path: Path
) -> None:
    """While the drainer runs, a step forward hurries no retry it scheduled (a new event
    goes out, the waiting retry does not come with it). After a restart on the stepped
    clock the waiting rows fall due at once, each is retried once early, and its next
    retry is stamped on the new time: one early attempt per row, then the schedule."""
    receiver.script("fwd", default=Answer(500))
    settings = hook(receiver, "fwd", retry_schedule=[60.0, 60.0, 60.0])
    wall = Wall()
    async with webhook(journal_path, settings) as (j, plan):
        waiting = [mail(), mail(), mail()]
        async with draining(j, plan, wall) as drainer:
            await append(j, plan, *waiting)
            for event in waiting:
                await retry_stamped(j, plan, event, attempts=1)
            wall.offset += HOUR
            fresh = mail()
            await append(j, plan, fresh)
            await retry_stamped(j, plan, fresh, attempts=1)
            await eventually(lambda: drainer.in_flight == 0, seconds=10, what="nothing in flight")
            assert [sent(receiver, "fwd", event) for event in waiting] == [[500]] * 3
        restarted = Wall(HOUR)
        restarted_at = restarted()
        async with draining(j, plan, restarted) as drainer:
            rows = [await retry_stamped(j, plan, event, attempts=2) for event in waiting]
            await eventually(lambda: drainer.in_flight == 0, seconds=10, what="nothing in flight")
        assert [sent(receiver, "fwd", event) for event in waiting] == [[500, 500]] * 3
        # Each next retry is a full step (60 s) after the restart on the new clock.
        assert all(row.next_at >= restarted_at + 60.0 for row in rows)
