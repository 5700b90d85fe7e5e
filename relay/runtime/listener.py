"""The source: one long-poll listener per tenant, turning Exmail pushes into journal events.

Where it sits: Exmail ``listen``/``user/list``/``user/get`` -> :class:`Listener` ->
:class:`relay.journal.Journal`. The listener resumes from the tenant's checkpointed
``Ver`` and sends the next ``listen`` only after the events of the previous answer are
committed, so a crash can duplicate an event but never lose one it accepted.

Within one answer, mail reminders and unread counts are committed first (one
transaction), then a version update is expanded through ``user/list`` and ``user/get``
and committed together with the new ``Ver``. If the expansion fails, the mail events are
already safe and the old ``Ver`` stays, so the next ``listen`` reports the change again.

Faults are classified (see :meth:`Listener._classify`):

- invalid token: renewed once and retried, then transient; if the token fence forbids
  renewing (``TokenFenced``: another replica owns the tenant now), the listener stops;
- transient (network, timeouts, 5xx, 1002, malformed bodies): capped exponential backoff
  with full jitter, reset by the next success;
- bad credentials: the tenant is *failed* (readiness and the status page say so) and is
  retried slowly;
- the journal cannot read the tenant's checkpoint (a damaged page, a locked file): the
  tenant is *failed* with the reason and retried with backoff.

A ``listen`` that gets no answer by the client's deadline (hold plus a margin) is a
*timeout* fault (outcome ``timeout``), never a keep-alive: the server answers an idle
poll at its hold, so silence means a stalled link. :meth:`Listener.silent_for` says how
long Exmail has left this tenant unanswered; readiness fails once that passes the listen
deadline, which is at the first such timeout (or a refused link's first deadline).

A listener never raises out of :meth:`Listener.run` for an upstream fault, so one
tenant's trouble never touches another tenant.

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
import collections
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from relay.core import events as ev
from relay.core.backoff import Backoff
from relay.core.events import Event
from relay.core.routing import Router
from relay.core.throttle import LogThrottle
from relay.exmail import (
    ExmailClient,
    ExmailError,
    ExmailTimeout,
    InvalidCredentials,
    InvalidToken,
    MalformedResponse,
    NetworkError,
    ResponseTooLarge,
    TokenFenced,
    VersionUpdate,
    is_transient,
)
from relay.journal import Journal, JournalClosed, JournalError
from relay.runtime.enrich import Enricher
from relay.runtime.observer import Observer
from relay.runtime.translate import Translation, translate_listen

__all__ = ["Listener", "ListenerStatus"]

log = logging.getLogger("relay.runtime.listener")

T = TypeVar("T")
State = Literal["starting", "connected", "backoff", "paused", "failed", "stopped"]
Bootstrap = Literal["skip", "snapshot"]

# How often an ongoing outage is logged again (the first failure is always logged).
LOG_EVERY = 60.0


@dataclass
class ListenerStatus:
    """What the status page and readiness know about one tenant (mutable, loop-owned)."""

    tenant: str
    state: State = "starting"
    ver: int | None = None
    last_event_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    failures: int = 0
    # Set while the journal refuses this tenant's commit (the events are held in memory).
    journal_error: str | None = None
    # Clock time since which Exmail has not answered a listen (None: the last one was).
    unanswered_since: float | None = None
    events_by_type: collections.Counter[str] = field(default_factory=collections.Counter)
    recent: collections.deque[tuple[float, str, str, str]] = field(
        default_factory=lambda: collections.deque(maxlen=50)
    )


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
    ) -> None:
        self.tenant = tenant
        # Unanswered longer than this fails readiness; default: the listen deadline.
        self.silence_limit = client.listen_timeout if silence_limit is None else silence_limit
        self._observe = (observer or Observer()).tenant(tenant)
        self.client = client
        self.journal = journal
        self.route = route
        self.bootstrap = bootstrap
        self.status = ListenerStatus(tenant)
        self._on_listen = on_listen or (lambda: None)  # before every listen (takeover gap)
        self._enricher = Enricher(
            tenant, client, concurrency=enrich_concurrency, skipped=self._skip
        )
        self._backoff = backoff or Backoff(base=0.5, cap=30.0)
        self._failed_backoff = failed_backoff or Backoff(base=30.0, cap=300.0)
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
        task = self._interruptible_task
        if task is not None and not task.done():
            task.cancel()

    def crashed(self, reason: str) -> None:
        """The supervisor saw :meth:`run` raise (a bug): show the tenant as failed."""
        self.status.last_error = reason
        self.status.last_error_at = self._clock()
        self.status.failures += 1
        self._set_state("failed")

    async def run(self) -> None:
        try:
            ver = await self._until_ready()
            while ver is not None and not self._stop.is_set():
                ver = await self._cycle(ver)
        except (JournalClosed, _Abandoned):
            pass
        except TokenFenced as exc:  # another replica owns the tenant: no fault loop
            log.warning("tenant let go", extra={"tenant": self.tenant, "reason": str(exc)})
            self._stop.set()
        if self._stop.is_set():
            self._set_state("stopped")

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

    async def _until_ready(self) -> int | None:
        """The Ver to listen from: the checkpoint, or a fresh bootstrap."""
        while not self._stop.is_set():
            try:
                ver = await self.journal.checkpoint(self.tenant)
            except JournalClosed:
                raise
            except JournalError as exc:  # a damaged page, a locked file: no crash loop
                await self._journal_fault(exc)
                continue
            if ver is not None:
                self.status.ver = ver
                self._observe.checkpoint(ver)
                return ver
            try:
                result = await self._interruptible(self._bootstrap())
            except ExmailError as exc:
                await self._fault(exc, "bootstrap")
                continue
            if result is not None:
                return result
        return None

    async def _bootstrap(self) -> int:
        listing = await self.client.user_list(0)
        new_ver = int(listing.ver)
        now = self._now()
        built = [
            ev.directory_changed(
                tenant=self.tenant, old_ver=0, new_ver=new_ver, count=len(listing.entries), now=now
            )
        ]
        if self.bootstrap == "snapshot":
            built += await self._enricher.user_events(listing.entries, new_ver, now, snapshot=True)
        await self._commit(built, checkpoint=new_ver)
        log.info(
            "directory bootstrapped",
            extra={"tenant": self.tenant, "ver": new_ver, "mode": self.bootstrap},
        )
        return new_ver

    async def _cycle(self, ver: int) -> int:
        if self.journal.full:
            self._set_state("paused")
            await self._interruptible(self.journal.wait_capacity())
            if self._stop.is_set():
                return ver
        if self.status.unanswered_since is None:
            self.status.unanswered_since = self._clock()
        self._on_listen()
        try:
            messages = await self._interruptible(self.client.listen(ver))
        except ExmailError as exc:
            if not isinstance(exc, ExmailTimeout | NetworkError):
                self.status.unanswered_since = None  # an answer, if not a good one
            await self._fault(exc, "listen")
            return ver
        if messages is None:  # stopped while waiting
            return ver
        self.status.unanswered_since = None
        translation = translate_listen(self.tenant, ver, messages, now=self._now())
        for skipped in translation.skipped:
            self._skip(skipped.kind, skipped.detail)
        if translation.unreadable:
            await self._fault(MalformedResponse("listen answered no readable JSON"), "listen")
            return ver
        self._set_state("connected")  # the listen answered
        self._observe.listen("data" if messages else "keepalive")
        try:
            new_ver = await self._handle(ver, translation)
        except ExmailError as exc:
            await self._fault(exc, "directory")
            return ver
        # Recovered only after a whole good cycle: a listen that answers while every
        # directory expansion fails must keep backing off, not start over each time.
        self._recovered()
        return new_ver

    async def _handle(self, ver: int, translation: Translation) -> int:
        if translation.events:
            await self._commit(translation.events)
        if translation.update is not None:
            return await self._directory(ver, translation.update)
        return ver

    async def _directory(self, ver: int, update: VersionUpdate) -> int:
        listing = await self.client.user_list(ver)
        new_ver = int(listing.ver) if int(listing.ver) > 0 else update.ver
        now = self._now()
        built = [
            ev.directory_changed(
                tenant=self.tenant,
                old_ver=ver,
                new_ver=new_ver,
                count=len(listing.entries),
                now=now,
            )
        ]
        built += await self._enricher.user_events(listing.entries, new_ver, now, snapshot=False)
        await self._commit(built, checkpoint=new_ver)
        return new_ver

    async def _commit(self, built: Sequence[Event], *, checkpoint: int | None = None) -> None:
        inserted = await self._append(built, checkpoint)
        if checkpoint is not None:
            self.status.ver = checkpoint
            self._observe.checkpoint(checkpoint)
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

    async def _append(self, built: Sequence[Event], checkpoint: int | None) -> int:
        """Append ``built`` durably, retrying for as long as the journal refuses it.

        The events were handed out by the server and exist nowhere else: they are held
        here, not dropped, until the commit succeeds or the listener is stopped.
        """
        refusals = 0
        throttle = LogThrottle(every=LOG_EVERY)
        previous = self.status.state
        while True:
            try:
                inserted = await self.journal.append(
                    self.tenant, built, route=self.route, checkpoint=checkpoint
                )
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
                await self._sleep(self._journal_backoff.delay(refusals - 1))
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

    def _classify(
        self, exc: ExmailError
    ) -> Literal["config", "token", "too_large", "timeout", "transient"]:
        if isinstance(exc, InvalidCredentials):
            return "config"
        if isinstance(exc, ExmailTimeout):
            return "timeout"  # no answer by the deadline: a stalled link, not a keep-alive
        if isinstance(exc, ResponseTooLarge):
            # The answer was read past the cap and dropped whole: what it carried is
            # gone (the server handed it out). Counted apart, so the cap can be raised
            # ([[tenants]] max_response_bytes) before it costs more.
            return "too_large"
        if isinstance(exc, InvalidToken):
            return "token"
        if is_transient(exc):
            return "transient"
        # Any other API refusal of listen/user/list is not going to heal by hammering:
        # treat it like a transient fault (backoff), and say what it was.
        return "transient"

    async def _fault(self, exc: ExmailError, during: str) -> None:
        if isinstance(exc, TokenFenced):
            raise exc
        kind = self._classify(exc)
        self._observe.listen(kind)
        self.status.failures += 1
        self.status.last_error = f"{during}: {exc}"
        self.status.last_error_at = self._clock()
        if kind == "config":
            self._set_state("failed")
            delay = self._failed_backoff.delay(self._streak)
        else:
            self._set_state("backoff")
            delay = self._backoff.delay(self._streak)
        self._streak += 1
        if self._streak == 1:
            self._fault_log.reset()
        if self._fault_log.admit(self._monotonic()) is not None:
            log.warning(
                "upstream fault, backing off",
                extra={
                    "tenant": self.tenant,
                    "fault": kind,
                    "during": during,
                    "error": str(exc),
                    "retry_in": round(delay, 3),
                    "failures": self._streak,
                },
            )
        await self._sleep(delay)

    async def _journal_fault(self, exc: JournalError) -> None:
        """The checkpoint cannot be read: the tenant is *failed* with the reason (it
        cannot listen without its Ver) and tries again with backoff."""
        self.status.failures += 1
        self.status.last_error = f"journal: {exc}"
        self.status.last_error_at = self._clock()
        self._set_state("failed")
        delay = self._backoff.delay(self._streak)
        self._streak += 1
        if self._streak == 1:
            self._fault_log.reset()
        if self._fault_log.admit(self._monotonic()) is not None:
            log.error(
                "checkpoint unreadable, retrying",
                extra={
                    "tenant": self.tenant,
                    "error": str(exc),
                    "retry_in": round(delay, 3),
                    "failures": self._streak,
                },
            )
        await self._sleep(delay)

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

    def silent_for(self, now: float) -> float | None:
        """Seconds Exmail has left this tenant's listen unanswered, once that is longer
        than ``silence_limit`` (readiness fails); ``None`` otherwise. A tenant paused on
        a full journal or stopped is not waiting for Exmail."""
        since = self.status.unanswered_since
        if since is None or self.status.state in ("paused", "stopped"):
            return None
        silent = now - since
        return silent if silent > self.silence_limit else None

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
