"""The pacer: one per replica, it hands out turns to go to Exmail's token endpoint.

Where it sits: every tenant's :class:`relay.exmail.TokenCache` awaits :meth:`Pacer.turn`
before it fetches a token (an api2 tenant's caches too, one per application), the
:class:`relay.runtime.listener.Listener` takes a turn (shown as the state ``waiting``)
before a start-up that needs a token or a bootstrap, and an api2 tenant's
:class:`relay.runtime.directory2.DirectoryPoller` takes one before its first listing
(``directory.waiting``). One pacer per replica serves both APIs.
The arithmetic is :class:`relay.core.pacing.TurnQueue`; this module only sleeps.

No task of its own: waiters await a future each, and one timer (``loop.call_later``)
wakes the head of the queue when the bucket has a token for it. A waiter that is
cancelled (its tenant let go, its shard released) leaves the queue; one cancelled just
as its turn came gives the turn back.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable

from relay.core.pacing import TokenBucket, TurnQueue, default_burst
from relay.runtime.observer import Observer

__all__ = ["Pacer"]


class Pacer:
    """``rate`` turns a second, ``burst`` at once, first come first served."""

    def __init__(
        self,
        rate: float,
        *,
        burst: int | None = None,
        observer: Observer | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = default_burst(rate) if burst is None else burst
        self._clock = clock
        self._queue: TurnQueue[int] = TurnQueue(TokenBucket(rate, self.burst, clock()))
        self._observer = observer or Observer()
        self._futures: dict[int, asyncio.Future[None]] = {}
        self._keys = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self.granted = 0
        self.waited = 0

    def __repr__(self) -> str:
        return f"Pacer(rate={self.rate:g}, burst={self.burst}, waiting={len(self._queue)})"

    @property
    def waiting(self) -> int:
        """Turns asked for and not yet given."""
        return len(self._queue)

    async def turn(self) -> None:
        """Return when it is this caller's turn (at once if nobody waits and the bucket
        has a token)."""
        started = self._clock()
        key = next(self._keys)
        if self._queue.arrive(key, started):
            self.granted += 1
            self._observer.takeover_turn(0.0)
            return
        future = asyncio.get_running_loop().create_future()
        self._futures[key] = future
        self._observer.takeover_queue(len(self._queue))
        self._schedule()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._queue.give_back(self._clock())  # let in, but gone: the next one goes
                self._wake()
            else:
                self._queue.leave(key)
            raise
        finally:
            self._futures.pop(key, None)
            self._observer.takeover_queue(len(self._queue))
        self.granted += 1
        self.waited += 1
        self._observer.takeover_turn(self._clock() - started)

    def _schedule(self) -> None:
        if self._timer is not None:
            return
        delay = self._queue.next_in(self._clock())
        if delay is not None:
            self._timer = asyncio.get_running_loop().call_later(delay, self._wake)

    def _wake(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        now = self._clock()
        while admitted := self._queue.admit(now):
            for key in admitted:
                future = self._futures.get(key)
                if future is not None and not future.done():
                    future.set_result(None)
                else:  # cancelled, its task not yet run to leave the queue: next one
                    self._queue.give_back(now)
        self._schedule()
