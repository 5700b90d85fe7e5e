"""The drainer: moves one sink's pending deliveries out of the journal.

Where it sits: between :class:`relay.journal.Journal` and one :class:`relay.sinks.Sink`.
Each sink (and each webhook endpoint) gets its own drainer, so a slow or dead
destination never holds up another one.

What it does, in order: claim due rows oldest first, keep up to ``max_in_flight``
attempts running (a sliding window, not batches: one slow attempt does not idle the
other slots), respect a rate limit, then turn each :data:`~relay.sinks.Outcome` into a
journal :class:`~relay.journal.Settlement` with :func:`decide` (pure), recorded in
shared writes (:mod:`relay.runtime.settle`). A sink that reports
:class:`~relay.sinks.Unavailable` pauses the whole drainer with capped, jittered
backoff instead of burning through the backlog's retry budget.

With ``ordered`` the drainer keeps strict FIFO: one attempt at a time, and a failed
head waits for its retry before anything behind it moves (head-of-line blocking, by
choice).

Failures, by kind:

- The sink cannot deliver (:class:`~relay.sinks.Unavailable`): pause, then probe with one
  attempt at a time (above).
- The journal cannot record an outcome (``settle``) or a disable (``set_disabled``): a
  :class:`~relay.journal.JournalError` is an expected failure (a full disk, a locked or
  corrupt file). The delivery stays pending and may be sent again, with the same id.
  The drainer shows the error as ``last_error`` and ``failing`` (readiness), counts it
  (``failed("journal")``), logs it (the first time, then once a minute), and pauses:
  no claims until the attempts in flight are done and the backoff has passed, then one
  probe at a time until a write succeeds. So each backoff step costs at most one extra
  copy per delivery that was in flight, never a hot loop.
- Anything else raised in here is a bug. Every attempt and every settle flush is a task
  this drainer owns: their done callbacks hand their exceptions to :meth:`Drainer.run`,
  which raises the first one (the supervisor logs it and restarts the drainer). Nothing
  is fire-and-forget, so nothing ends as "Task exception was never retrieved".

Clocks: waits are monotonic; due times are stamped and claimed on a
:class:`~relay.runtime.clock.DueClock` (the wall clock read once, then advanced
monotonically), so wall-clock steps neither stall nor hurry retries (see there).

Shutdown (:meth:`Drainer.stop`): stop claiming, let in-flight attempts finish until the
deadline, then cancel them. A cancelled attempt stays pending in the journal and is
delivered after the restart: at-least-once, never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
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
    retry_horizon,
)
from relay.journal import Journal, JournalClosed, JournalError
from relay.runtime.clock import DueClock
from relay.runtime.observer import SinkObserver
from relay.runtime.ratelimit import RateLimiter
from relay.runtime.settle import SettleBatcher
from relay.sinks import Sink

__all__ = ["Drainer"]

log = logging.getLogger("relay.runtime.drainer")

# How often a drainer re-reads whether its sink is disabled in the journal: another
# process (``exmail-relay endpoint disable|enable``) switches it there, and a running
# relay must follow within a couple of seconds either way. One indexed read a second.
DISABLED_POLL = 1.0
# The longest an idle drainer sleeps before looking at the journal again. Another
# process (``exmail-relay deadletters replay``, ``endpoint enable``) cannot set this
# process's wakeup event, so rows it revives are found by this poll.
IDLE_POLL = 2.0
# While the journal keeps refusing writes, log again at most this often (seconds).
LOG_EVERY = 60.0


class Drainer:
    """Drains ``sink``'s rows from ``journal`` until :meth:`stop`."""

    def __init__(
        self,
        journal: Journal,
        sink: Sink,
        policy: DrainPolicy,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
        observer: SinkObserver | None = None,
    ) -> None:
        self.journal = journal
        self.sink = sink
        self.policy = policy
        self._clock = clock
        self._due = DueClock(horizon=retry_horizon(policy), wall=clock, monotonic=monotonic)
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
        self._limiter = (
            RateLimiter(policy.rate_limit, clock=monotonic) if policy.rate_limit > 0 else None
        )
        self.disabled_reason: str | None = None
        self._disabled_read_at = 0.0  # loop time of the last read of the disabled flag
        self._settler = SettleBatcher(
            journal,
            sink.name,
            refused=functools.partial(self._journal_failed, during="settle"),
            recorded=self._journal_recovered,
            crashed=self._collect,
        )
        # Unexpected exceptions (bugs) of the attempts and flushes, for run() to raise.
        self._errors: list[BaseException] = []
        self._outcome_error: str | None = None
        # Set while the journal refuses this sink's writes (see the module docstring).
        self._journal_error: str | None = None
        self._journal_failures = 0
        self._journal_streak = 0
        self._journal_pause_due = False
        self._journal_logged = 0.0
        # This sink's handle of the observer seam (``Observer.sink(name)``); none: no metrics.
        self.observer = observer if observer is not None else SinkObserver()
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

    @property
    def last_error(self) -> str | None:
        """The journal's error while it refuses this sink's writes, else the last
        failed attempt's error (``None`` after a success)."""
        return self._journal_error if self._journal_error is not None else self._outcome_error

    @property
    def failing(self) -> bool:
        """True while the journal refuses this sink's writes (the drainer is paused)."""
        return self._journal_error is not None

    async def run(self) -> None:
        """Drain until :meth:`stop`. A bug, here or in an attempt or a settle flush,
        propagates out of ``run``; nothing this drainer started outlives it."""
        try:
            try:
                await self._drain()
                # stop() was called: it gives the attempts in flight their grace.
                await self._settled()
            except JournalClosed:
                pass
            except BaseException as exc:
                await self._abandon()
                self._log_errors(besides=exc)
                raise
            await self._abandon()
            self._raise_errors()
        finally:
            self._is_connected = None
            self.observer.connected(False)

    async def _drain(self) -> None:
        wake = self._wake
        self.disabled_reason = await self.journal.disabled(self.name)
        self._disabled_read_at = asyncio.get_running_loop().time()
        self._note_disabled()
        self.observer.connected(False)
        while not self._stopping.is_set():
            self._raise_errors()
            if self.disabled_reason is not None:
                wake.clear()
                await self._wait(DISABLED_POLL)
                self.disabled_reason = await self.journal.disabled(self.name)
                self._disabled_read_at = asyncio.get_running_loop().time()
                self._note_disabled()
                continue
            if self._journal_pause_due:
                await self._journal_pause()
                continue
            if await self._disabled_elsewhere():
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
            claimed_at = self._due.now()
            rows = await self.journal.claim(
                self.name,
                limit=free,
                now=claimed_at,
                skip=tuple(self._inflight),
                due_only=not self.policy.ordered,
                horizon=self._due.horizon,
            )
            if self.policy.ordered and rows and (head := self._due.until(rows[0].next_at)):
                await self._wait(min(IDLE_POLL, head))
                continue
            for row in rows:
                if self._stopping.is_set():
                    break
                if self._limiter is not None:
                    await self._limiter.acquire()
                self._start(row)
                if self._unavailable_streak or self._journal_error is not None:
                    break  # probing a sink (or a journal) that was failing: one at a time
            if self._unavailable_streak:
                await self._pause()
            elif self._journal_error is not None and rows:
                await self._quiesce()  # the probe: recovered, or the next pause is due
            elif len(rows) < free:
                # Every row due at claimed_at is in flight now: sleep until new rows
                # come, a retry falls due, or an attempt ends in anything but
                # success (it may schedule a retry, pause or disable the sink). A
                # success needs no look at the journal, which at low rates saves
                # two reads per event.
                self._resume_at = -1
                await self._wait(await self._idle_timeout(claimed_at))

    async def _disabled_elsewhere(self) -> bool:
        """Whether the sink was disabled by another process (re-read at most once every
        ``DISABLED_POLL`` seconds, on the monotonic clock)."""
        now = asyncio.get_running_loop().time()
        if now - self._disabled_read_at < DISABLED_POLL:
            return False
        self._disabled_read_at = now
        self.disabled_reason = await self.journal.disabled(self.name)
        if self.disabled_reason is None:
            return False
        self._note_disabled()
        log.warning(
            "sink disabled in the journal, not delivering",
            extra={"sink": self.name, "reason": self.disabled_reason},
        )
        return True

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
        return min(IDLE_POLL, max(0.0, self._retry_at - self._due.now()))

    def _note_disabled(self) -> None:
        self.observer.disabled(self.disabled_reason is not None)

    async def _wait(self, seconds: float | None) -> None:
        """Wait until woken (see ``_wake``), stopped, or ``seconds`` pass."""
        if self._stopping.is_set():
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    async def _quiesce(self) -> None:
        """Wait until no attempt is in flight (or stop(), or a bug for run() to raise)."""
        while self._inflight and not self._stopping.is_set() and not self._errors:
            self._wake.clear()
            self._resume_at = 0
            await self._wait(None)

    async def _sleep(self, seconds: float) -> None:
        # Only stop() may cut a pause short: new rows must not speed up the probes.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=max(seconds, 0.05))

    async def _pause(self) -> None:
        delay = self.policy.backoff.delay(self._unavailable_streak - 1, self._rand())
        # Wait for the probe to finish first, then back off before the next one.
        await self._quiesce()
        if self._unavailable_streak and not self._errors:
            await self._sleep(delay)

    async def _journal_pause(self) -> None:
        """The journal refused a write: let the attempts in flight end, then back off."""
        await self._quiesce()
        self._journal_pause_due = False
        if self._journal_error is None or self._errors or self._stopping.is_set():
            return  # a write went through meanwhile, or there is a bug to raise
        self._journal_streak += 1
        await self._sleep(self.policy.backoff.delay(self._journal_streak - 1, self._rand()))

    def _start(self, row: Delivery) -> None:
        task = asyncio.create_task(self._attempt(row), name=f"deliver-{self.name}-{row.seq}")
        self._inflight[row.seq] = task
        task.add_done_callback(functools.partial(self._finished, row.seq))

    def _finished(self, seq: int, task: asyncio.Task[None]) -> None:
        self._inflight.pop(seq, None)
        if not task.cancelled() and (error := task.exception()) is not None:
            self._collect(error)
        elif len(self._inflight) <= self._resume_at:
            self._wake.set()

    def _collect(self, error: BaseException) -> None:
        """Keep an owned task's unexpected exception for run() to raise, and wake it."""
        if all(error is not seen for seen in self._errors):
            self._errors.append(error)
        self._wake.set()

    def _raise_errors(self) -> None:
        if self._errors:
            first = self._errors[0]
            self._log_errors(besides=first)
            raise first

    def _log_errors(self, *, besides: BaseException) -> None:
        """Log the collected exceptions other than ``besides`` (the one being raised)."""
        for error in self._errors:
            if error is not besides:
                log.error("drainer task failed", exc_info=error, extra={"sink": self.name})
        self._errors.clear()

    async def _settled(self) -> None:
        """Wait for the attempts in flight (stop() cancels them after its grace)."""
        if self._inflight:
            await asyncio.wait(list(self._inflight.values()))

    async def _abandon(self) -> None:
        """Cancel the attempts still in flight (their rows stay pending: at-least-once)
        and wait for them and for the settle flushes, so nothing outlives run()."""
        for task in self._inflight.values():
            task.cancel()
        await self._settled()
        await self._settler.wait()

    async def _attempt(self, row: Delivery) -> None:
        try:
            outcome = await self.sink.send(row)
        except Exception:
            # A bug in a sink must not lose the event or kill the drainer: the row stays
            # pending, the traceback goes to the log, and the sink is treated as down.
            log.exception("sink raised instead of returning an outcome", extra={"sink": self.name})
            outcome = Unavailable("internal error in sink (see log)")
        update = decide(self.policy, row, outcome, now=self._due.now(), rand=self._rand)
        self._observe(row, outcome, update, self._clock())
        error: JournalError | None = None
        if isinstance(outcome, Disable):
            self.disabled_reason = outcome.error
            self._note_disabled()
            try:
                await self.journal.set_disabled(self.name, True, outcome.error)
            except JournalError as exc:
                # Not recorded, so not disabled: the row stays pending and the next
                # probe after the pause asks the endpoint again.
                self.disabled_reason = None
                self._note_disabled()
                error = exc
                if not isinstance(exc, JournalClosed):
                    self._journal_failed(exc, during="disable")
        if error is None and update is not None:
            error = await self._settler.record(update)
        if isinstance(error, JournalClosed):
            return
        if error is not None:
            self._failed("journal")
            return
        if update is not None and update.state == "pending" and update.next_at > 0:
            self._retry_at = min(self._retry_at or update.next_at, update.next_at)
        if not isinstance(outcome, Delivered | Dead):
            self._wake.set()

    def _journal_failed(self, error: JournalError, *, during: str) -> None:
        """The journal refused a write: show it, log it (rate-limited) and pause."""
        now = self._clock()
        first = self._journal_error is None
        self._journal_error = f"journal: {error}"
        self._journal_failures += 1
        self._journal_pause_due = True
        self._wake.set()
        if first or now - self._journal_logged >= LOG_EVERY:
            self._journal_logged = now
            log.error(
                "journal write failed, pausing the sink",
                extra={
                    "sink": self.name,
                    "during": during,
                    "error": str(error),
                    "failures": self._journal_failures,
                },
            )

    def _journal_recovered(self) -> None:
        if self._journal_error is None:
            return
        log.info(
            "journal writes recovered",
            extra={"sink": self.name, "after_failures": self._journal_failures},
        )
        self._journal_error = None
        self._journal_failures = 0
        self._journal_streak = 0
        self._journal_pause_due = False

    def _observe(
        self, row: Delivery, outcome: Outcome, update: Settlement | None, now: float
    ) -> None:
        name = self.name
        if isinstance(outcome, Delivered):
            self._unavailable_streak = 0
            self._outcome_error = None
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
            self._outcome_error = outcome.error
            return
        self._unavailable_streak = 0
        self._outcome_error = outcome.error
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
        """Stop claiming; give in-flight attempts ``grace`` seconds, then cancel them.
        Pending settle flushes are awaited (bounded); an expected failure (the journal
        refusing a write) is logged by the drainer, never raised here."""
        self._stopping.set()
        self._wake.set()
        pending = list(self._inflight.values())
        if pending:
            _, still = await asyncio.wait(pending, timeout=grace)
            for task in still:
                task.cancel()
            if still:
                await asyncio.wait(still)
        await self._settler.wait(max(grace, 1.0))
