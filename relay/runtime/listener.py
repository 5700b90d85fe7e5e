"""The source: one long-poll listener per tenant, turning Exmail pushes into journal events.

Where it sits: Exmail ``listen``/``user/list``/``user/get`` -> :class:`Listener` ->
:class:`relay.journal.Journal`. The listener resumes from the tenant's checkpointed
``Ver`` and sends the next ``listen`` only after the events of the previous answer are
committed, so a crash can duplicate an event but never lose one it accepted.

Mail first: an answer's mail reminders and unread counts are committed at once (one
transaction, with the newest announced directory Ver, if any), and the next ``listen``
goes out right after. A version update is expanded (``user/list``, ``user/get``) by the
tenant's :class:`relay.runtime.directory.DirectoryWorker`, apart from the listen loop
and with its own backoff, and committed with the new ``Ver``. While it fails, the
committed Ver stays where it was, the announced one stays in the journal, and the
listen loop listens from the announced Ver, so mail never waits for the directory.

Faults are classified (see :meth:`Listener._classify`):

- invalid token: renewed once and retried, then transient; if the token fence forbids
  renewing (``TokenFenced``: another replica owns the tenant now), the listener stops;
- transient (network, timeouts, 5xx, 1002, malformed bodies): capped exponential backoff
  with full jitter, reset by the next success;
- bad credentials: the tenant is *failed* (readiness and the status page say so), retried;
- the journal cannot read the tenant's checkpoint (a damaged page, a locked file): the
  tenant is *failed* with the reason and retried with backoff.

A ``listen`` that gets no answer by the client's deadline (hold plus a margin) is a
*timeout* fault (outcome ``timeout``), never a keep-alive: the server answers an idle
poll at its hold, so silence means a stalled link. :func:`~relay.runtime.supervisor.silent_for`
says how long Exmail has left a tenant unanswered; readiness fails once that passes the
listen deadline, at the first such timeout (or a refused link's first deadline).

An upstream fault never leaves :meth:`Listener.run`: one tenant's trouble stays its own.

A journal that refuses a commit (:class:`~relay.journal.JournalError`: a full disk, a
write lock held by another process, a bad page) is not an upstream fault either: the
listener keeps the events in hand and retries the commit with capped backoff, sends no
``listen`` meanwhile (the server keeps what it has not handed out), and shows the
reason as ``journal_error`` (readiness reports ``journal: not writable: ...``). Nothing
fetched is dropped while the process lives; stopping during such an outage is the one
way to lose it, and that is logged with the count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from relay.core.backoff import Backoff
from relay.core.events import Event
from relay.core.routing import Router
from relay.core.throttle import LogThrottle
from relay.exmail import (
    ExmailClient,
    ExmailError,
    ExmailTimeout,
    MalformedResponse,
    NetworkError,
    TokenFenced,
)
from relay.journal import Journal, JournalClosed, JournalError
from relay.runtime.checkpointing import CheckpointPublisher, NoCheckpoints
from relay.runtime.directory import DirectoryWorker, PendingDirectory, classify
from relay.runtime.enrich import Enricher
from relay.runtime.observer import Observer
from relay.runtime.status import ListenerState as State
from relay.runtime.status import ListenerStatus
from relay.runtime.tracing import NO_TRACE, Trace, Tracing
from relay.runtime.translate import Translation, translate_listen

__all__ = ["Listener", "ListenerStatus"]

log = logging.getLogger("relay.runtime.listener")

T = TypeVar("T")
Bootstrap = Literal["skip", "snapshot"]

# How often an ongoing outage is logged again (the first failure is always logged).
LOG_EVERY = 60.0


class Listener:
    """Holds one tenant's ``listen`` connection. Run with :meth:`run`, end with :meth:`stop`."""

    def __init__(
        self,
        *,
        tenant: str,
        client: ExmailClient,
        journal: Journal,
        route: Router,
        bootstrap: Bootstrap = "skip",
        enrich_concurrency: int = 8,
        backoff: Backoff | None = None,
        failed_backoff: Backoff | None = None,
        journal_backoff: Backoff | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        observer: Observer | None = None,
        silence_limit: float | None = None,
        on_listen: Callable[[], None] | None = None,
        checkpoints: CheckpointPublisher | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.tenant = tenant
        # Every Ver committed or resumed from (lease mode: the broker's copy), explicit.
        self._checkpoints: CheckpointPublisher = checkpoints or NoCheckpoints()
        # Unanswered longer than this fails readiness; default: the listen deadline.
        self.silence_limit = client.listen_timeout if silence_limit is None else silence_limit
        self._observe = (observer or Observer()).tenant(tenant)
        self._tracing = tracing or Tracing()  # tracing: a span per answer with events
        self.client = client
        self.journal = journal
        self.route = route
        self.bootstrap = bootstrap
        self.status = ListenerStatus(tenant)
        self._last_mail: dict[str, str] = {}  # account -> newest MailId (unread ids)
        self._on_listen = on_listen or (lambda: None)  # before every listen (takeover gap)
        self._enricher = Enricher(
            tenant, client, concurrency=enrich_concurrency, skipped=self._skip
        )
        self._backoff = backoff or Backoff(base=0.5, cap=30.0)
        self._failed_backoff = failed_backoff or Backoff(base=30.0, cap=300.0)
        self._directory = DirectoryWorker(
            tenant=tenant,
            tracing=self._tracing,
            client=client,
            enricher=self._enricher,
            commit=self._commit,
            observer=self._observe,
            now=self._now,
            backoff=self._backoff,
            failed_backoff=self._failed_backoff,
            clock=clock,
            monotonic=monotonic,
            on_fault=self._note_fault,
            on_pending=self._directory_pending,
        )
        self._journal_backoff = journal_backoff or Backoff(base=0.2, cap=5.0)
        self._clock = clock
        self._monotonic = monotonic  # the log's rate limit: wall-clock steps are no time
        self._stop = asyncio.Event()
        # The task inside _interruptible (None outside it): stop() cancels it there.
        self._interruptible_task: asyncio.Task[Any] | None = None
        self._state_shown = False
        self._streak = 0
        self._fault_log = LogThrottle(every=LOG_EVERY)  # reset when a streak ends
        self._set_state("starting")

    def __repr__(self) -> str:
        return f"Listener({self.tenant!r}, state={self.status.state!r})"

    # -- lifecycle ---------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the listener to stop: an open ``listen`` or backoff wait ends at once; a
        commit in progress finishes first."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._directory.stop()
        task = self._interruptible_task
        if task is not None and not task.done():
            task.cancel()

    def crashed(self, reason: str) -> None:
        """The supervisor saw :meth:`run` raise (a bug): show the tenant as failed."""
        self._note_fault(reason)
        self._set_state("failed")

    async def run(self) -> None:
        try:
            if await self._until_ready():
                await self._listen_and_expand()
        except (JournalClosed, _Abandoned):
            pass
        except TokenFenced as exc:  # another replica owns the tenant: no fault loop
            log.warning("tenant let go", extra={"tenant": self.tenant, "reason": str(exc)})
            self.stop()
        if self._stop.is_set():
            self._set_state("stopped")

    async def _listen_and_expand(self) -> None:
        """The listen loop here, the directory worker beside it; either one's end (a
        fence, a closed journal, a bug) stops the other, and goes up."""
        worker = asyncio.ensure_future(self._directory.run())

        def worker_ended(task: asyncio.Future[None]) -> None:
            if task.cancelled() or task.exception() is not None:
                self.stop()  # the listen loop ends too, and run() raises what it raised

        worker.add_done_callback(worker_ended)
        try:
            while not self._stop.is_set():
                await self._cycle(self._directory.listen_ver)
        finally:
            self._directory.stop()
            await asyncio.wait((worker,))
        worker.result()  # the worker's TokenFenced, JournalClosed or bug, if any

    async def _interruptible(self, awaitable: Coroutine[Any, Any, T]) -> T | None:
        """Await ``awaitable`` unless :meth:`stop` comes first (then ``None``).

        Awaited in this task, not a new one: :meth:`stop` cancels this task while it
        is in here, and the cancellation is taken back (``uncancel``) if it was the
        stop's; anyone else's cancellation goes on up. Two tasks and an
        ``asyncio.wait`` per ``listen`` were a visible share of an idle tenant's cost.
        """
        if self._stop.is_set():
            awaitable.close()
            return None
        task = asyncio.current_task()
        assert task is not None
        outer, self._interruptible_task = self._interruptible_task, task
        try:
            return await awaitable
        except asyncio.CancelledError:
            if self._stop.is_set() and task.uncancel() == 0:
                return None
            raise
        finally:
            self._interruptible_task = outer

    async def _sleep(self, seconds: float) -> None:
        await self._interruptible(asyncio.sleep(seconds))

    # -- the loop ----------------------------------------------------------------------

    async def _until_ready(self) -> bool:
        """Resume from the checkpoint (and any pending directory change), or bootstrap;
        False when stopped first."""
        while not self._stop.is_set():
            try:
                ver = await self.journal.checkpoint(self.tenant)
                pending = None if ver is None else await self.journal.directory_pending(self.tenant)
            except JournalClosed:
                raise
            except JournalError as exc:  # a damaged page, a locked file: no crash loop
                await self._journal_fault(exc)
                continue
            if ver is not None:
                self.status.ver = ver
                self._observe.checkpoint(ver)
                self._checkpoints.publish(self.tenant, ver)
                self._directory.resume(ver, pending)
                return True
            try:
                if not await self._take_turn(bootstrap=True):
                    return False
                result = await self._interruptible(self._directory.bootstrap(self.bootstrap))
            except ExmailError as exc:
                await self._fault(exc, "bootstrap")
                continue
            if result is not None:
                self._directory.resume(result, None)
                return True
        return False

    async def _cycle(self, ver: int) -> None:
        """One ``listen`` from ``ver`` (the newest announced directory Ver) and its
        answer committed."""
        if self.journal.full:
            self._set_state("paused")
            await self._interruptible(self.journal.wait_capacity())
            if self._stop.is_set():
                return
        try:
            if not await self._take_turn():
                return
            if self.status.unanswered_since is None:
                self.status.unanswered_since = self._clock()
            self._on_listen()
            sent_ns = time.time_ns()  # tracing: the answer's span starts when the listen went
            messages = await self._interruptible(self.client.listen(ver))
        except ExmailError as exc:
            if not isinstance(exc, ExmailTimeout | NetworkError):
                self.status.unanswered_since = None  # an answer, if not a good one
            await self._fault(exc, "listen")
            return
        if messages is None:  # stopped while waiting
            return
        self.status.unanswered_since = None
        translation = translate_listen(
            self.tenant, ver, messages, now=self._now(), last_mail=self._last_mail
        )
        for skipped in translation.skipped:
            self._skip(skipped.kind, skipped.detail)
        if translation.truncated:
            for name in translation.truncated:
                self._observe.truncated(name)
            log.warning(
                "over-long mail fields cut to max_field_bytes (delivered, data.truncated)",
                extra={"tenant": self.tenant, "fields": sorted(set(translation.truncated))},
            )
        if translation.unreadable:
            await self._fault(MalformedResponse("listen answered no readable JSON"), "listen")
            return
        self._set_state("connected")  # the listen answered
        self._observe.listen("data" if messages else "keepalive")
        await self._handle(translation, sent_ns, len(messages))
        self._recovered()

    async def _take_turn(self, *, bootstrap: bool = False) -> bool:
        """Pacing: wait for a turn (``waiting``) when a token or a bootstrap is needed."""
        tokens, previous = self.client.tokens, self.status.state
        if tokens.paced and (bootstrap or tokens.current() is None):
            self._set_state("waiting")
            await self._interruptible(tokens.turn())  # and the token, fetched in the turn
            self._set_state(previous)
        return not self._stop.is_set()

    async def _handle(self, translation: Translation, sent_ns: int, messages: int) -> None:
        """Commit the answer's events, with a newly announced directory Ver if any,
        and hand that Ver to the directory worker."""
        update = translation.update
        announced = None if update is None else update.ver
        if translation.events or announced is not None:
            events = len(translation.events)
            with self._tracing.answer(self.tenant, sent_ns, messages, events) as trace:
                await self._commit(translation.events, announced=announced, trace=trace)
        if announced is not None:
            self._directory.announce(announced)

    async def _commit(
        self,
        built: Sequence[Event],
        *,
        checkpoint: int | None = None,
        announced: int | None = None,
        settled: bool = False,
        trace: Trace = NO_TRACE,
    ) -> None:
        inserted = await self._append(built, checkpoint, announced, settled, trace)
        if checkpoint is not None:
            self.status.ver = checkpoint
            self._observe.checkpoint(checkpoint)
            self._checkpoints.publish(self.tenant, checkpoint)
        self._observe.committed(built)
        stamp = self._clock()
        for event in built:
            self.status.events_by_type[event.type] += 1
            self.status.recent.append((stamp, event.type, event.id, event.subject))
        if built:
            self.status.last_event_at = stamp
        if inserted < len(built):
            log.debug(
                "duplicate events skipped",
                extra={"tenant": self.tenant, "duplicates": len(built) - inserted},
            )

    async def _append(
        self,
        built: Sequence[Event],
        checkpoint: int | None,
        announced: int | None,
        settled: bool,
        trace: Trace,
    ) -> int:
        """Append ``built`` durably, retrying for as long as the journal refuses it.

        The events were handed out by the server and exist nowhere else: they are held
        here, not dropped, until the commit succeeds or the listener is stopped.
        """
        refusals = 0
        throttle = LogThrottle(every=LOG_EVERY)
        previous = self.status.state
        while True:
            try:
                with trace.commit(len(built)) as span:
                    inserted = await self.journal.append(
                        self.tenant,
                        built,
                        route=self.route,
                        checkpoint=checkpoint,
                        announced=announced,
                        settled=settled,
                        traceparent=trace.traceparent,
                        tracestate=trace.tracestate,
                    )
                    span.inserted(inserted)
            except JournalClosed:
                raise
            except JournalError as exc:
                refusals += 1
                self.status.journal_error = f"not writable: {exc.reason}"
                self.status.last_error = f"journal: {self.status.journal_error}"
                self.status.last_error_at = self._clock()
                self._set_state("paused")
                if throttle.admit(self._monotonic()) is not None:
                    log.error(
                        "journal refused a commit, holding the events and retrying",
                        extra={
                            "tenant": self.tenant,
                            "events": len(built),
                            "error": str(exc),
                            "failures": refusals,
                        },
                    )
                if self._stop.is_set():
                    log.error(
                        "stopping with events the journal refused; they are lost",
                        extra={"tenant": self.tenant, "events": len(built)},
                    )
                    raise _Abandoned from exc
                # Not _sleep: the directory worker's task commits here too, and stop()
                # cancels only the listen loop's wait; the stop event reaches both.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._stop.wait(), self._journal_backoff.delay(refusals - 1)
                    )
                continue
            if refusals:
                self.status.journal_error = None
                self._set_state(previous)
                log.info(
                    "journal commit went through after refusals",
                    extra={"tenant": self.tenant, "after_failures": refusals},
                )
            return inserted

    # -- faults ------------------------------------------------------------------------

    async def _fault(self, exc: ExmailError, during: str) -> None:
        if isinstance(exc, TokenFenced):
            raise exc
        kind = classify(exc)
        self._observe.listen(kind)
        failed = kind == "config"
        policy = self._failed_backoff if failed else self._backoff
        context = {"fault": kind, "during": during}
        await self._back_off(during, exc, failed, policy, "upstream fault, backing off", context)

    async def _journal_fault(self, exc: JournalError) -> None:
        """The checkpoint cannot be read: the tenant is *failed* with the reason (it
        cannot listen without its Ver) and tries again with backoff."""
        await self._back_off("journal", exc, True, self._backoff, "checkpoint unreadable, retrying")

    async def _back_off(
        self,
        during: str,
        exc: Exception,
        failed: bool,
        policy: Backoff,
        message: str,
        context: dict[str, str] | None = None,
    ) -> None:
        """Show the fault, log ``message`` (the first time, then once a minute), wait."""
        self.status.failures += 1
        self.status.last_error = f"{during}: {exc}"
        self.status.last_error_at = self._clock()
        self._set_state("failed" if failed else "backoff")
        delay = policy.delay(self._streak)
        self._streak += 1
        if self._streak == 1:
            self._fault_log.reset()
        if self._fault_log.admit(self._monotonic()) is not None:
            extra: dict[str, object] = {"tenant": self.tenant, **(context or {})}
            extra |= {"error": str(exc), "retry_in": round(delay, 3), "failures": self._streak}
            (log.warning if context else log.error)(message, extra=extra)
        await self._sleep(delay)

    def _note_fault(self, summary: str) -> None:
        """A fault counted and shown (the directory worker's: the tenant stays connected)."""
        self.status.failures += 1
        self.status.last_error = summary
        self.status.last_error_at = self._clock()

    def _directory_pending(self, pending: PendingDirectory | None) -> None:
        self.status.directory_pending = pending  # the status page shows it

    def _recovered(self) -> None:
        if self._streak:
            log.info(
                "upstream recovered", extra={"tenant": self.tenant, "after_failures": self._streak}
            )
        self._streak = 0

    def _skip(self, kind: str, detail: str) -> None:
        self._observe.skipped(kind)
        log.warning(
            "listen message skipped", extra={"tenant": self.tenant, "kind": kind, "detail": detail}
        )

    def _set_state(self, state: State) -> None:
        if state == self.status.state and self._state_shown:
            return  # every answered listen says "connected": no metric writes for that
        self._state_shown = True
        self.status.state = state
        self._observe.state(state)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)


class _Abandoned(Exception):
    """Stopped while the journal refused a commit: ends :meth:`Listener.run`."""
