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
- The journal refuses a write (a :class:`~relay.journal.JournalError`: a full disk, a
  locked or corrupt file): shown as ``last_error`` and ``failing`` (readiness), counted
  (``failed("journal")``), logged the first time then once a minute, and the drainer
  pauses; see :mod:`relay.runtime.refusals`. Outcomes it could not record are *held*
  and their write retried alone with capped backoff, nothing claimed meanwhile: no
  copy is sent again while the process lives (a restart sends each held one once
  more, same id). A refused disable leaves the row pending and probes one attempt
  at a time. A refused *read* (a damaged page under a claim) pauses the same way,
  until a claim goes through again: logged, shown, never a crash loop.
- Anything else raised in here is a bug. Every attempt (:mod:`relay.runtime.attempts`)
  and every settle flush is a task this drainer owns: their done callbacks hand their
  exceptions to :meth:`Drainer.run`, which raises the first one (the supervisor logs
  it and restarts the drainer). Nothing is fire-and-forget, so nothing ends as "Task
  exception was never retrieved".

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
from relay.runtime.attempts import Attempts
from relay.runtime.clock import DueClock
from relay.runtime.observer import SinkObserver
from relay.runtime.ratelimit import RateLimiter
from relay.runtime.refusals import JournalRefusals
from relay.runtime.settle import SettleBatcher
from relay.runtime.tracing import Tracing
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
        tracing: Tracing | None = None,
    ) -> None:
        self.journal = journal
        self._send = (tracing or Tracing()).sender(sink)  # sink.send; tracing: in a span
        self.sink = sink
        self.policy = policy
        self._clock = clock
        self._due = DueClock(horizon=retry_horizon(policy), wall=clock, monotonic=monotonic)
        self._rand = rand
        self._inflight = Attempts(sink.name, self._attempt_ended)
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
        # Unavailable answers since the last pause count as one failed probe: a batch of
        # attempts in flight when the link went (or before it came up) fails together.
        self._unavailable_counted = False
        self._limiter = (
            RateLimiter(policy.rate_limit, clock=monotonic) if policy.rate_limit > 0 else None
        )
        self.disabled_reason: str | None = None
        self._disabled_read_at = 0.0  # loop time of the last read of the disabled flag
        # Set while the journal refuses this sink's writes (see the module docstring).
        self._refusals = JournalRefusals(sink.name, monotonic)
        self._settler = SettleBatcher(
            journal,
            sink.name,
            refused=functools.partial(self._journal_failed, during="settle"),
            recorded=self._refusals.recovered,
            crashed=self._inflight.collect,
            settled=self._settled,
        )
        self._outcome_error: str | None = None
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
        return len(self._inflight) + len(self._settler)  # and outcomes not yet recorded

    @property
    def last_error(self) -> str | None:
        """The journal's error while it refuses this sink's writes, else the last
        failed attempt's error (``None`` after a success)."""
        journal = self._refusals.error
        return journal if journal is not None else self._outcome_error

    @property
    def refusals(self) -> JournalRefusals:
        """What this drainer knows while the journal refuses its writes (read only)."""
        return self._refusals

    @property
    def failing(self) -> bool:
        """True while the journal refuses this sink's writes (the drainer is paused)."""
        return self._refusals.error is not None

    async def run(self) -> None:
        """Drain until :meth:`stop`. A bug, here or in an attempt or a settle flush,
        propagates out of ``run``; nothing this drainer started outlives it."""
        try:
            try:
                await self._drain()
                # stop() was called: it gives the attempts in flight their grace.
                await self._inflight.settled()
            except JournalClosed:
                pass
            except BaseException as exc:
                await self._abandon()
                self._inflight.log_errors(besides=exc)
                raise
            await self._abandon()
            self._inflight.raise_errors()
        finally:
            self._is_connected = None
            self.observer.connected(False)

    async def _drain(self) -> None:
        self.observer.connected(False)
        first = True
        while not self._stopping.is_set():
            self._inflight.raise_errors()
            try:
                if first:
                    await self._read_disabled()
                    first = False
                await self._step()
            except JournalClosed:
                raise
            except JournalError as exc:
                # A read refused (a damaged page, an I/O error): pause as for a refused
                # write; the next claim that works clears it.
                self._journal_failed(exc, during="read")
                self._refusals.read_failed = True

    async def _read_disabled(self) -> None:
        self.disabled_reason = await self.journal.disabled(self.name)
        self._disabled_read_at = asyncio.get_running_loop().time()
        self._note_disabled()

    async def _step(self) -> None:
        """One turn of the loop: wait, pause or claim and start attempts."""
        wake = self._wake
        if self.disabled_reason is not None:
            wake.clear()
            await self._wait(DISABLED_POLL)
            await self._read_disabled()
            return
        if self._refusals.pause_due or self._refusals.held:
            await self._journal_pause()
            return
        if await self._disabled_elsewhere():
            return
        window = 1 if self.policy.ordered else self.policy.max_in_flight
        free = window - self.in_flight
        # Claim in batches: with attempts in flight, wait until a quarter of the
        # window is free rather than reading the journal once per freed slot.
        if free <= 0 or (self.in_flight and free < max(1, window // 4)):
            wake.clear()
            self._resume_at = window - max(1, window // 4)
            if self.in_flight > self._resume_at:
                await self._wait(None)
            return
        wake.clear()
        claimed_at = self._due.now()
        rows = await self.journal.claim(
            self.name,
            limit=free,
            now=claimed_at,
            skip=(*self._inflight, *self._settler, *self._refusals.held),
            due_only=not self.policy.ordered,
            horizon=self._due.horizon,
        )
        if self._refusals.read_failed:
            self._refusals.read_failed = False
            self._refusals.recovered()
        if self.policy.ordered and rows and (head := self._due.until(rows[0].next_at)):
            await self._wait(min(IDLE_POLL, head))
            return
        for row in rows:
            if self._stopping.is_set():
                break
            if self._limiter is not None:
                await self._limiter.acquire()
            self._inflight.start(row.seq, self._attempt(row))
            if self._unavailable_streak or self._refusals.error is not None:
                break  # probing a sink (or a journal) that was failing: one at a time
        if self._unavailable_streak:
            await self._pause()
        elif self._refusals.error is not None and rows:
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
        while self.in_flight and not self._stopping.is_set() and not self._inflight.errors:
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
        if self._unavailable_streak and not self._inflight.errors:
            await self._sleep(delay)
        self._unavailable_counted = False  # the next probe's failure is a new step

    async def _journal_pause(self) -> None:
        """The journal refused a write: let the attempts in flight end, back off, then
        retry the outcomes it refused (if any) before claiming anything again."""
        await self._quiesce()
        refusals = self._refusals
        refusals.pause_due = False
        if self._inflight.errors or self._stopping.is_set():
            return  # a bug to raise, or stop(): held outcomes get a last try there
        if refusals.error is not None:
            refusals.streak += 1
            await self._sleep(self.policy.backoff.delay(refusals.streak - 1, self._rand()))
            if self._stopping.is_set():
                return
        await self._record_held()

    async def _record_held(self) -> bool:
        """Record the held outcomes in one write; True when none is left."""
        held = list(self._refusals.held.values())
        if not held:
            return True
        try:
            await self.journal.settle(self.name, held)
        except JournalClosed:
            raise  # run() ends on it; stop() says what was left
        except JournalError as exc:
            self._journal_failed(exc, during="settle")
            return False
        self._refusals.written(held)
        self._refusals.recovered()
        self._wake.set()
        return True

    def _attempt_ended(self, failed: bool) -> None:
        # A bug wakes the loop at once (to raise it); an attempt that ended otherwise
        # wakes it only once the window has room down to ``_resume_at``.
        if failed or self.in_flight <= self._resume_at:
            self._wake.set()

    async def _abandon(self) -> None:
        """Cancel the attempts still in flight (their rows stay pending: at-least-once)
        and wait for them and for the settle flushes, so nothing outlives run()."""
        await self._inflight.cancel()
        await self._settler.wait()

    async def _attempt(self, row: Delivery) -> None:
        try:
            outcome = await self._send(row)  # sink.send(row), or its span around it
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
        if error is None and update is not None:  # in flight until recorded: see _settled
            self._settler.record(update, wake=not isinstance(outcome, Delivered | Dead))
        elif error is not None and not isinstance(error, JournalClosed):
            self._failed("journal")
        elif error is None and not isinstance(outcome, Delivered | Dead):
            self._wake.set()

    def _settled(self, updates: list[Settlement], error: BaseException | None, wake: bool) -> None:
        """A settle flush ended and its rows left the flight (see SettleBatcher)."""
        for update in updates:
            if error is None and update.state == "pending" and update.next_at > 0:
                self._retry_at = min(self._retry_at or update.next_at, update.next_at)
            elif isinstance(error, JournalError) and not isinstance(error, JournalClosed):
                self._failed("journal")
                if update.attempted:  # an untried hand-back loses nothing: left pending
                    self._refusals.hold(update)  # retried by _journal_pause, not re-sent
        if wake or self.in_flight <= self._resume_at:
            self._wake.set()

    def _journal_failed(self, error: JournalError, *, during: str) -> None:
        """The journal refused a write: show it, log it (rate-limited) and pause."""
        self._refusals.refused(error, during=during)
        self._wake.set()

    def _observe(
        self, row: Delivery, outcome: Outcome, update: Settlement | None, now: float
    ) -> None:
        name = self.name
        if isinstance(outcome, Delivered):
            self._unavailable_streak = 0
            self._unavailable_counted = False
            self._outcome_error = None
            if self._is_connected is not True:
                self._is_connected = True
                self.observer.connected(True)
            self.delivered += 1
            self.observer.delivered(max(0.0, now - row.created))
            return
        self._is_connected = None
        if isinstance(outcome, Unavailable):
            if not self._unavailable_counted:
                self._unavailable_streak += 1
                self._unavailable_counted = True
            self.observer.connected(False)
            self._failed("unavailable")
            self._outcome_error = outcome.error
            return
        self._unavailable_streak = 0
        self._unavailable_counted = False
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
        await self._inflight.settled(grace)
        await self._settler.wait(max(grace, 1.0))
        recorded = False
        with contextlib.suppress(JournalClosed):
            recorded = await self._record_held()
        if not recorded:
            # Still refused: these rows stay pending and go out once more after the
            # restart (same ids). Said once, with the count, never silently.
            log.error(
                "stopping with delivery outcomes the journal refused; they will be sent again",
                extra={"sink": self.name, "deliveries": len(self._refusals.held)},
            )
