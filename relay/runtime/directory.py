"""Directory changes, expanded apart from the mail: a tenant's directory trouble never
delays its mail.

Where it sits: inside :class:`relay.runtime.listener.Listener`. The listen loop commits
mail and unread events as they come and, when ``listen`` announces a new directory Ver,
records it (durably, in the same transaction as that answer's events:
:meth:`relay.journal.Journal.directory_pending`) and hands it to the tenant's
:class:`DirectoryWorker`. The worker expands the change (``user/list`` from the
committed Ver, one ``user/get`` per changed account) and commits the user events with
the new Ver, retrying with its own capped backoff while the listen loop keeps
listening from the announced Ver. So a failing ``user/get`` or a slow ``user/list``
costs the tenant its directory events for a while, never its mail.

Durable and single: the committed Ver (the checkpoint) moves only with a whole change,
and the announced Ver stays in the journal until it does, so a restart resumes the
pending work (neither loses nor repeats it), and ids are stable, so a change committed
twice after a crash is stored once.

What it cannot do: a tenant that has never listed its directory (no checkpoint) has
no Ver to listen from; its bootstrap stays in front of its first ``listen``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol, TypeVar

from relay.core import events as ev
from relay.core.backoff import Backoff
from relay.core.events import Event
from relay.core.throttle import LogThrottle
from relay.exmail import (
    ExmailClient,
    ExmailError,
    ExmailTimeout,
    InvalidCredentials,
    InvalidToken,
    ResponseTooLarge,
    TokenFenced,
    is_transient,
)
from relay.runtime.enrich import Enricher
from relay.runtime.observer import TenantObserver
from relay.runtime.stopping import until_stopped
from relay.runtime.tracing import Trace, Tracing

__all__ = ["DirectoryWorker", "Fault", "PendingDirectory", "classify"]

log = logging.getLogger("relay.runtime.directory")

T = TypeVar("T")
Fault = Literal["config", "token", "too_large", "timeout", "transient"]
LOG_EVERY = 60.0


def classify(exc: ExmailError) -> Fault:
    """What kind of fault an Exmail error is, for backoff and metrics."""
    if isinstance(exc, InvalidCredentials):
        return "config"
    if isinstance(exc, ExmailTimeout):
        return "timeout"  # no answer by the deadline: a stalled link, not a keep-alive
    if isinstance(exc, ResponseTooLarge):
        # The answer was read past the cap and dropped whole. Counted apart, so the cap
        # can be raised ([[tenants]] max_response_bytes) before it costs more.
        return "too_large"
    if isinstance(exc, InvalidToken):
        return "token"
    if is_transient(exc):
        return "transient"
    # Any other API refusal is not going to heal by hammering: treat it like a
    # transient fault (backoff), and say what it was.
    return "transient"


@dataclass(frozen=True, slots=True)
class _Change:
    """An expanded change, ready to commit."""

    built: list[Event]
    ver: int
    generation: int
    started_ns: int  # tracing: when the expansion began (epoch ns)


@dataclass
class PendingDirectory:
    """A directory change announced and not yet committed (loop-owned, mutable)."""

    target: int
    since: float
    attempts: int = 0
    last_error: str | None = None


class Commit(Protocol):
    def __call__(
        self,
        built: Sequence[Event],
        *,
        checkpoint: int | None = None,
        announced: int | None = None,
        settled: bool = False,
        trace: Trace = ...,
    ) -> Awaitable[None]: ...


class DirectoryWorker:
    """Expands one tenant's announced directory changes. Run by its listener.

    ``ver`` is the committed directory Ver; :attr:`listen_ver` the Ver to listen from
    (the newest announced one while a change is pending). ``commit`` is the listener's
    journal commit; ``on_fault(summary)`` tells the listener's status about a failure.
    """

    def __init__(
        self,
        *,
        tenant: str,
        client: ExmailClient,
        enricher: Enricher,
        commit: Commit,
        observer: TenantObserver,
        now: Callable[[], datetime],
        backoff: Backoff,
        failed_backoff: Backoff,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        on_fault: Callable[[str], None] = lambda _summary: None,
        on_pending: Callable[[PendingDirectory | None], None] = lambda _pending: None,
        tracing: Tracing | None = None,
    ) -> None:
        self.tenant = tenant
        self.client = client
        self.ver = 0
        self.pending: PendingDirectory | None = None
        self._enricher = enricher
        self._commit = commit
        self._tracing = tracing or Tracing()  # tracing: a trace per expansion committed
        self._observe = observer
        self._now = now
        self._backoff = backoff
        self._failed_backoff = failed_backoff
        self._clock = clock
        self._monotonic = monotonic
        self._on_fault = on_fault
        self._on_pending = on_pending
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._generation = 0  # bumped by every announcement: a newer one arrived meanwhile
        self._log_throttle = LogThrottle(every=LOG_EVERY)

    def __repr__(self) -> str:
        return f"DirectoryWorker({self.tenant!r}, ver={self.ver}, pending={self.pending})"

    @property
    def listen_ver(self) -> int:
        return self.pending.target if self.pending is not None else self.ver

    def resume(self, ver: int, pending: tuple[int, float] | None) -> None:
        """Start from the committed ``ver`` and the journal's pending change, if any."""
        self.ver = ver
        # Vers only grow: a recorded target at or below the checkpoint is done already
        # (a takeover's checkpoint from the broker may be newer than this journal).
        if pending is not None and pending[0] > ver:
            self.pending = PendingDirectory(target=pending[0], since=pending[1])
            self._wake.set()
        self._on_pending(self.pending)

    def announce(self, target: int) -> None:
        """``listen`` announced ``target`` (already recorded in the journal)."""
        self._generation += 1
        if self.pending is None:
            self.pending = PendingDirectory(target=target, since=self._clock())
        else:
            self.pending.target = target
        self._on_pending(self.pending)
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    async def bootstrap(self, mode: Literal["skip", "snapshot"]) -> int:
        """A tenant's first listing (no checkpoint yet): ``directory.changed`` from Ver 0,
        with every account as ``user.added`` in ``snapshot`` mode, committed with the
        listing's Ver. Runs before the first ``listen`` (there is no Ver to listen from)."""
        listing = await self.client.user_list(0)
        new_ver = int(listing.ver)
        now = self._now()
        built = [
            ev.directory_changed(
                tenant=self.tenant, old_ver=0, new_ver=new_ver, count=len(listing.entries), now=now
            )
        ]
        if mode == "snapshot":
            built += await self._enricher.user_events(listing.entries, new_ver, now, snapshot=True)
        await self._commit(built, checkpoint=new_ver)
        log.info(
            "directory bootstrapped", extra={"tenant": self.tenant, "ver": new_ver, "mode": mode}
        )
        return new_ver

    async def run(self) -> None:
        """Expand pending changes until :meth:`stop`. Raises :class:`TokenFenced` (the
        tenant is another replica's now) and bugs; every Exmail fault is retried."""
        streak = 0
        while not self._stop.is_set():
            if self.pending is None:
                await self._wake.wait()
                self._wake.clear()
                continue
            try:
                fetched = await self._until_stopped(self._fetch())
            except TokenFenced:
                raise
            except ExmailError as exc:
                delay = self._fault(exc, streak)
                streak += 1
                await self._until_stopped(asyncio.sleep(delay))
                continue
            if fetched is None:
                return  # stopped mid-expansion: nothing committed, the change stays pending
            # The commit is not interrupted by stop(): it finishes (or the listener's
            # commit gives up with a log line of its own when stopped during an outage).
            await self._commit_change(fetched)
            if streak:
                log.info(
                    "directory expansion recovered",
                    extra={"tenant": self.tenant, "after_failures": streak},
                )
            streak = 0

    async def _fetch(self) -> _Change:
        """One expansion from the committed Ver (``user/list``, then ``user/get``)."""
        assert self.pending is not None
        generation = self._generation
        started_ns = time.time_ns()
        self.pending.attempts += 1
        old_ver = self.ver
        listing = await self.client.user_list(old_ver)
        new_ver = int(listing.ver) if int(listing.ver) > 0 else self.pending.target
        now = self._now()
        built = [
            ev.directory_changed(
                tenant=self.tenant,
                old_ver=old_ver,
                new_ver=new_ver,
                count=len(listing.entries),
                now=now,
            )
        ]
        built += await self._enricher.user_events(listing.entries, new_ver, now, snapshot=False)
        return _Change(built, new_ver, generation, started_ns)

    async def _commit_change(self, change: _Change) -> None:
        assert self.pending is not None
        # Settled unless listen announced a newer Ver while this one was being expanded
        # (then that one is still pending, from the Ver committed now).
        settled = change.generation == self._generation or self.pending.target == change.ver
        events = len(change.built)
        with self._tracing.expansion(self.tenant, change.started_ns, events) as trace:
            await self._commit(
                change.built,
                checkpoint=change.ver,
                settled=settled,
                announced=None if settled else self.pending.target,
                trace=trace,
            )
        self.ver = change.ver
        self._observe.directory("ok")
        if settled:
            self.pending = None
            self._on_pending(None)

    async def _until_stopped(self, awaitable: Awaitable[T]) -> T | None:
        """``awaitable``'s result, or None if :meth:`stop` came first (it is then
        cancelled and awaited)."""
        return await until_stopped(awaitable, self._stop)

    def _fault(self, exc: ExmailError, streak: int) -> float:
        kind = classify(exc)
        self._observe.directory(kind)
        summary = f"directory: {exc}"
        if self.pending is not None:
            self.pending.last_error = summary
        self._on_fault(summary)
        policy = self._failed_backoff if kind == "config" else self._backoff
        delay = policy.delay(streak)
        if streak == 0:
            self._log_throttle.reset()  # a new streak of trouble is logged at once
        suppressed = self._log_throttle.admit(self._monotonic())
        if suppressed is not None:
            log.warning(
                "directory expansion failed, mail goes on; retrying",
                extra={
                    "tenant": self.tenant,
                    "fault": kind,
                    "error": str(exc),
                    "retry_in": round(delay, 3),
                    "failures": streak + 1,
                    "suppressed": suppressed,
                },
            )
        return delay
