"""The pacer's shell: turns in arrival order, a waiter that is let go gives its place up,
the queue is reported. Only the order is asserted, never how long anything took."""

from __future__ import annotations

import asyncio

from relay.runtime.observer import Observer
from relay.runtime.pacing import Pacer


class Seen(Observer):
    def __init__(self) -> None:
        self.queue: list[int] = []
        self.waits: list[float] = []

    def takeover_queue(self, waiting: int) -> None:
        self.queue.append(waiting)

    def takeover_turn(self, waited: float) -> None:
        self.waits.append(waited)


async def test_turns_go_in_arrival_order_and_a_cancelled_waiter_leaves() -> None:
    seen = Seen()
    pacer = Pacer(50.0, burst=1, observer=seen)
    order: list[str] = []

    async def tenant(name: str) -> None:
        await pacer.turn()
        order.append(name)

    first = asyncio.ensure_future(tenant("a"))
    await asyncio.sleep(0)
    assert order == ["a"], "the burst lets the first one through at once"
    rest = {name: asyncio.ensure_future(tenant(name)) for name in "bcde"}
    await asyncio.sleep(0)
    assert pacer.waiting == 4 and seen.queue[-1] == 4
    rest["c"].cancel()
    await asyncio.gather(first, *rest.values(), return_exceptions=True)
    assert order == ["a", "b", "d", "e"]
    assert pacer.waiting == 0 and seen.queue[-1] == 0
    assert pacer.granted == 4 and pacer.waited == 3
    assert len(seen.waits) == 4 and seen.waits[0] == 0.0


async def test_a_high_rate_lets_everyone_through_at_once() -> None:
    pacer = Pacer(100_000.0)
    assert pacer.burst == 25_000
    await asyncio.gather(*(pacer.turn() for _ in range(1000)))
    assert pacer.waited == 0
