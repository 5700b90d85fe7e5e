"""The drainer: moves one sink's pending deliveries out of the journal.

Where it sits: between :class:`relay.journal.Journal` and one :class:`relay.sinks.Sink`.
Each sink (and each webhook endpoint) gets its own drainer, so a slow or dead
destination never holds up another one.

What it does, in order: claim due rows oldest first, keep up to ``max_in_flight``
attempts running (a sliding window, not batches: one slow attempt does not idle the
other slots), respect a rate limit, then turn each :data:`~relay.sinks.Outcome` into a
journal :class:`~relay.journal.Settlement` with :func:`decide` (pure). A sink that reports
:class:`~relay.sinks.Unavailable` pauses the whole drainer with capped, jittered
backoff instead of burning through the backlog's retry budget.

With ``ordered`` the drainer keeps strict FIFO: one attempt at a time, and a failed
head waits for its retry before anything behind it moves (head-of-line blocking, by
choice).

Shutdown (:meth:`Drainer.stop`): stop claiming, let in-flight attempts finish until the
deadline, then cancel them. A cancelled attempt stays pending in the journal and is
delivered after the restart: at-least-once, never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable

from relay.core.delivery import (
    Dead,
    Delivered,
    Delivery,
    Disable,
    DrainPolicy,
    Outcome,
    Settlement,
    Unavailable,
    decide,
)
from relay.journal import Journal, JournalClosed
from relay.runtime.observer import Observer, SinkObserver
from relay.sinks import Sink

__all__ = ["Drainer"]

log = logging.getLogger("relay.runtime.drainer")

DISABLED_POLL = 5.0
# The longest an idle drainer sleeps before looking at the journal again. Another
# process (``exmail-relay deadletters replay``, ``endpoint enable``) cannot set this
# process's wakeup event, so rows it revives are found by this poll.
IDLE_POLL = 2.0


class _RateLimiter:
    """A token bucket allowing ``rate`` starts per second, bursts of up to ``rate``."""

    def __init__(self, rate: float, clock: Callable[[], float]) -> None:
        self._rate = rate
        self._clock = clock
        self._tokens = max(1.0, rate)
        self._stamp = clock()

    async def acquire(self) -> None:
        while True:
            now = self._clock()
            self._tokens = min(
                max(1.0, self._rate), self._tokens + (now - self._stamp) * self._rate
            )
            self._stamp = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return
            await asyncio.sleep((1.0 - self._tokens) / self._rate)


class Drainer:
    """Drains ``sink``'s rows from ``journal`` until :meth:`stop`."""

    def __init__(
        self,
        journal: Journal,
        sink: Sink,
        policy: DrainPolicy,
        *,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
        observer: Observer | SinkObserver | None = None,
    ) -> None:
        self.journal = journal
        self.sink = sink
        self.policy = policy
        self._clock = clock
        self._rand = rand
        self._inflight: dict[int, asyncio.Task[None]] = {}
        self._stopping = asyncio.Event()
        # One event wakes the loop: the journal sets it on new rows for this sink;
        # finished attempts set it once the in-flight count falls to ``_resume_at``;
        # stop() sets it. Waiting on it creates no tasks, which matters per event.
        self._wake = journal.wakeup(sink.name)
        self._resume_at = 0
        # The earliest retry this drainer knows of (None: none), and whether that is
        # still what the journal holds; see _idle_timeout.
        self._retry_at: float | None = None
        self._retry_known = False
        self._unavailable_streak = 0
        self._limiter = _RateLimiter(policy.rate_limit, clock) if policy.rate_limit > 0 else None
        self.disabled_reason: str | None = None
        self.last_error: str | None = None
        self._batch: tuple[list[Settlement], asyncio.Future[None]] | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        name = sink.name
        if isinstance(observer, SinkObserver):
            self.observer = observer
        else:
            self.observer = (observer or Observer()).sink(name)
        # Counted here for the status page, not read back out of a metrics registry.
        self.delivered = 0
        self.failed = 0
        self._is_connected: bool | None = None

    @property
    def name(self) -> str:
        return self.sink.name

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    async def run(self) -> None:
        wake = self._wake
        self.disabled_reason = await self.journal.disabled(self.name)
        self._note_disabled()
        self.observer.connected(False)
        try:
            while not self._stopping.is_set():
                if self.disabled_reason is not None:
                    wake.clear()
                    await self._wait(DISABLED_POLL)
                    self.disabled_reason = await self.journal.disabled(self.name)
                    self._note_disabled()
                    continue
                window = 1 if self.policy.ordered else self.policy.max_in_flight
                free = window - self.in_flight
                # Claim in batches: with attempts in flight, wait until a quarter of the
                # window is free rather than reading the journal once per freed slot.
                if free <= 0 or (self.in_flight and free < max(1, window // 4)):
                    wake.clear()
                    self._resume_at = window - max(1, window // 4)
                    if self.in_flight > self._resume_at:
                        await self._wait(None)
                    continue
                wake.clear()
                claimed_at = self._clock()
                rows = await self.journal.claim(
                    self.name,
                    limit=free,
                    now=claimed_at,
                    skip=tuple(self._inflight),
                    due_only=not self.policy.ordered,
                )
                if self.policy.ordered and rows and rows[0].next_at > self._clock():
                    await self._wait(min(IDLE_POLL, rows[0].next_at - self._clock()))
                    continue
                for row in rows:
                    if self._stopping.is_set():
                        break
                    if self._limiter is not None:
                        await self._limiter.acquire()
                    self._start(row)
                    if self._unavailable_streak:
                        break  # probing a sink that was down: one attempt at a time
                if self._unavailable_streak:
                    await self._pause()
                elif len(rows) < free:
                    # Every row due at claimed_at is in flight now: sleep until new rows
                    # come, a retry falls due, or an attempt ends in anything but
                    # success (it may schedule a retry, pause or disable the sink). A
                    # success needs no look at the journal, which at low rates saves
                    # two reads per event.
                    self._resume_at = -1
                    await self._wait(await self._idle_timeout(claimed_at))
        except JournalClosed:
            return
        finally:
            self._is_connected = None
            self.observer.connected(False)

    async def _idle_timeout(self, claimed_at: float) -> float:
        """Seconds until the next retry falls due (at most IDLE_POLL).

        Only this drainer schedules retries for its sink (another process's replay
        makes rows due at once, which the poll finds), so the time is asked of the
        journal once and then kept here, until it has passed.
        """
        if not self._retry_known or (self._retry_at is not None and self._retry_at <= claimed_at):
            self._retry_at = await self.journal.next_due(self.name, after=claimed_at)
            self._retry_known = True
        if self._retry_at is None:
            return IDLE_POLL
        return min(IDLE_POLL, max(0.0, self._retry_at - self._clock()))

    def _note_disabled(self) -> None:
        self.observer.disabled(self.disabled_reason is not None)

    async def _wait(self, seconds: float | None) -> None:
        """Wait until woken (see ``_wake``), stopped, or ``seconds`` pass."""
        if self._stopping.is_set():
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    async def _pause(self) -> None:
        delay = self.policy.backoff.delay(self._unavailable_streak - 1, self._rand())
        # Wait for the probe to finish first, then back off before the next one.
        while self._inflight and not self._stopping.is_set():
            self._wake.clear()
            self._resume_at = 0
            await self._wait(None)
        if self._unavailable_streak:
            # Only stop() may cut the pause short: new rows must not speed up the probes.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=max(delay, 0.05))

    def _start(self, row: Delivery) -> None:
        task = asyncio.create_task(self._attempt(row), name=f"deliver-{self.name}-{row.seq}")
        self._inflight[row.seq] = task
        task.add_done_callback(lambda _: self._finished(row.seq))

    def _finished(self, seq: int) -> None:
        self._inflight.pop(seq, None)
        if len(self._inflight) <= self._resume_at:
            self._wake.set()

    async def _attempt(self, row: Delivery) -> None:
        try:
            outcome = await self.sink.send(row)
        except Exception:
            # A bug in a sink must not lose the event or kill the drainer: the row stays
            # pending, the traceback goes to the log, and the sink is treated as down.
            log.exception("sink raised instead of returning an outcome", extra={"sink": self.name})
            outcome = Unavailable("internal error in sink (see log)")
        now = self._clock()
        update = decide(self.policy, row, outcome, now=now, rand=self._rand)
        self._observe(row, outcome, update, now)
        if isinstance(outcome, Disable):
            self.disabled_reason = outcome.error
            self._note_disabled()
            await self.journal.set_disabled(self.name, True, outcome.error)
        if update is not None:
            with contextlib.suppress(JournalClosed):
                await self._record(update)
            if update.state == "pending" and update.next_at > 0:
                self._retry_at = min(self._retry_at or update.next_at, update.next_at)
        if not isinstance(outcome, Delivered | Dead):
            self._wake.set()

    def _record(self, update: Settlement) -> asyncio.Future[None]:
        """Queue ``update`` for one journal write shared by every attempt that finishes
        in this loop iteration; the returned future is done once it is durable. The row
        stays in flight until then, so it cannot be claimed twice."""
        if self._batch is None:
            self._batch = ([], asyncio.get_running_loop().create_future())
            asyncio.get_running_loop().call_soon(self._flush_batch)
        updates, done = self._batch
        updates.append(update)
        return done

    def _flush_batch(self) -> None:
        if self._batch is None:
            return
        updates, done = self._batch
        self._batch = None
        task = asyncio.ensure_future(self.journal.settle(self.name, updates))
        self._flushes.add(task)

        def settle(finished: asyncio.Task[None]) -> None:
            self._flushes.discard(finished)
            if done.cancelled():
                return
            if finished.cancelled():
                done.cancel()
            elif (error := finished.exception()) is not None:
                done.set_exception(error)
            else:
                done.set_result(None)

        task.add_done_callback(settle)

    def _observe(
        self, row: Delivery, outcome: Outcome, update: Settlement | None, now: float
    ) -> None:
        name = self.name
        if isinstance(outcome, Delivered):
            self._unavailable_streak = 0
            self.last_error = None
            if self._is_connected is not True:
                self._is_connected = True
                self.observer.connected(True)
            self.delivered += 1
            self.observer.delivered(max(0.0, now - row.created))
            return
        self._is_connected = None
        if isinstance(outcome, Unavailable):
            self._unavailable_streak += 1
            self.observer.connected(False)
            self._failed("unavailable")
            self.last_error = outcome.error
            return
        self._unavailable_streak = 0
        self.last_error = outcome.error
        if update is not None and update.state == "dead":
            self._failed("dead")
            log.warning(
                "delivery became a dead letter",
                extra={
                    "sink": name,
                    "event_id": row.event_id,
                    "tenant": row.tenant,
                    "error": outcome.error,
                },
            )
        elif isinstance(outcome, Disable):
            self._failed("disabled")
            self.observer.connected(False)
            log.error("endpoint disabled", extra={"sink": name, "error": outcome.error})
        else:
            self._failed("retry")

    def _failed(self, reason: str) -> None:
        self.failed += 1
        self.observer.failed(reason)

    async def stop(self, grace: float) -> None:
        """Stop claiming; give in-flight attempts ``grace`` seconds, then cancel them."""
        self._stopping.set()
        self._wake.set()
        pending = list(self._inflight.values())
        if pending:
            _, still = await asyncio.wait(pending, timeout=grace)
            for task in still:
                task.cancel()
            if still:
                await asyncio.wait(still)
        if self._flushes:
            await asyncio.wait(list(self._flushes), timeout=max(grace, 1.0))
