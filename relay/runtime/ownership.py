"""Lease mode: run the listeners of the shards this replica holds, and only those.

Where it sits: :class:`relay.runtime.leases.LeaseManager` says which shards this replica
holds; a :class:`ShardRunner` turns that into listeners. On ``acquired(n)`` it reads the
newest checkpoints of shard ``n``'s tenants (:class:`CheckpointSource`, the broker's
copy; the newer of it and the journal wins), then starts their listeners. A read that
fails or does not finish is tried again with backoff while the shard's tenants wait,
shown in ``waiting``, readiness (:meth:`ShardRunner.checkpoint_trouble`) and status:
no tenant bootstraps from a guess. On
``released(n, reason)`` it stops them at once (an open long poll ends immediately) and
awaits them. Drainers are not the runner's business: a replica drains what its own
journal holds whether or not it still owns those tenants.

A planned release (``balance``, ``shutdown``) goes through :meth:`ShardRunner.before_release`,
the manager's gate: the listeners stop and their last commit finishes *before* the lease
queue is deleted, so the next owner starts from a settled checkpoint. A lost connection
has no gate: the broker may already have handed the shard on, so the listeners stop at
once and the runner does not wait for anything before letting go.

Every task is owned: one per held shard (its tenants' supervised listeners, gathered),
kept in a dict and awaited when the shard goes or the runner stops. A listener that
crashes (a bug) is shown as failed and restarted with backoff, as the supervisor does
for static mode. A listener fenced by its token (:class:`relay.exmail.TokenFenced`)
stops by itself. When the shard is really going, the release stops the rest; when the
lease's freshness only lapsed for a moment (a loaded loop ran a request past
``fresh_until``, before the confirm that renews it), the runner waits until the fence
says the shard is held again and starts a fresh listener for the tenant, from its
journal's Ver (counted in ``resumed``, logged once per resume).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from relay.core.backoff import Backoff
from relay.core.shards import ReleaseReason, shard_of
from relay.core.throttle import LogThrottle
from relay.journal import JournalError
from relay.runtime.checkpointing import (
    CheckpointSource,
    CheckpointUnavailable,
    NoCheckpoints,
    StoreHealth,
)
from relay.runtime.leases import LeaseManager
from relay.runtime.listener import Listener
from relay.runtime.observer import Observer
from relay.runtime.status import CheckpointStatus, HandoffStatus, ShardingStatus

__all__ = ["CheckpointSource", "Handoff", "NoCheckpoints", "ShardRunner"]

log = logging.getLogger("relay.runtime.ownership")

# Readiness fails once the lease connection has been down this long: a standby that
# cannot reach the broker cannot take over, and an owner has already let go.
LEASE_DOWN_LIMIT = 30.0
# How often a shard still waiting for its checkpoints is logged again.
WAIT_LOG_EVERY = 60.0

MakeListener = Callable[[str, Callable[[], None]], Listener]
"""Builds a fresh listener for a tenant; the callable is its ``on_listen`` hook."""


@dataclass(frozen=True, slots=True)
class Handoff:
    """The last shard this replica took or gave up, why, and when (clock time)."""

    shard: int
    kind: Literal["acquired", "released"]
    reason: ReleaseReason | None
    at: float


@dataclass(slots=True)
class _Shard:
    listeners: list[Listener]
    stopped: asyncio.Event
    task: asyncio.Task[None] | None = None


class ShardRunner:
    """Starts and stops the listeners of the held shards. Run with :meth:`run`."""

    def __init__(
        self,
        *,
        leases: LeaseManager,
        tenants: Sequence[str],
        make_listener: MakeListener,
        checkpoints: CheckpointSource | None = None,
        checkpoint_store: StoreHealth | None = None,
        checkpoint_timeout: float = 15.0,
        checkpoint_backoff: Backoff | None = None,
        flush_timeout: float = 1.0,
        stop_timeout: float = 5.0,
        restart_backoff: Backoff | None = None,
        recheck: float = 0.2,
        observer: Observer | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.leases = leases
        self.tenants = tuple(tenants)
        self._make_listener = make_listener
        self._checkpoints = checkpoints or NoCheckpoints()
        self._store = checkpoint_store
        self._checkpoint_timeout = checkpoint_timeout
        self._checkpoint_backoff = checkpoint_backoff or Backoff(base=0.5, cap=15.0)
        # Held shards whose tenants wait for a complete checkpoint read, and why.
        self.waiting: dict[int, str] = {}
        self._flush_timeout = flush_timeout
        self._stop_timeout = stop_timeout
        self._restart_backoff = restart_backoff or Backoff(base=1.0, cap=60.0)
        self._observer = observer or Observer()
        self._clock = clock
        self._monotonic = monotonic
        self._shards: dict[int, _Shard] = {}
        self.last_handoff: Handoff | None = None
        self.crashes: dict[str, int] = {}
        # Tenants let go by the fence while their shard stayed held, started again.
        self.resumed: dict[str, int] = {}
        self._recheck = recheck

    def __repr__(self) -> str:
        return f"ShardRunner(replica={self.leases.replica_id!r}, running={sorted(self._shards)})"

    # -- what status and readiness read ------------------------------------------------

    @property
    def listeners(self) -> list[Listener]:
        """The listeners of the shards running now, by shard."""
        return [lst for _, s in sorted(self._shards.items()) for lst in s.listeners]

    @property
    def running(self) -> frozenset[int]:
        return frozenset(self._shards)

    def tenants_of(self, shard: int) -> list[str]:
        return [t for t in self.tenants if shard_of(t, self.leases.shards) == shard]

    def describe(self) -> ShardingStatus:
        """The ``sharding`` part of the status document."""
        last = self.last_handoff
        owned = tuple(sorted(self.leases.owned))
        return ShardingStatus(
            mode="lease",
            replica=self.leases.replica_id,
            shards=self.leases.shards,
            owned=owned,
            live=tuple(sorted(self.leases.live)),
            standby=not owned,
            last_handoff=None
            if last is None
            else HandoffStatus(last.shard, last.kind, last.reason, last.at),
            last_error=self.leases.last_error,
            conflicts=tuple(self.leases.conflicts()),
            refused=dict(sorted(self.leases.refused.items())),
            unhealthy=self.leases.health(),
            blocked=self._blocked(),
            checkpoints=self._checkpoint_status(),
        )

    def _blocked(self) -> dict[str, dict[str, str | float]]:
        """The broker links a resource alarm blocks now, by name: reason and since."""
        blocked = {"leases": self.leases.link.block_status}
        if self._store is not None:
            blocked["checkpoints"] = self._store.block_status
        return {name: block for name, block in blocked.items() if block is not None}

    def _checkpoint_status(self) -> CheckpointStatus | None:
        store = self._store
        if store is None:
            return None
        return CheckpointStatus(
            queues=store.queue_of(0).removesuffix(".0") + ".<shard>",
            connected=store.connected,
            last_error=store.last_error,
            published=store.published,
            refused=store.refused,
            malformed=store.malformed,
            last_refused=store.last_refused,
            waiting={str(shard): why for shard, why in sorted(self.waiting.items())},
        )

    def checkpoint_trouble(self) -> str | None:
        """Why readiness should fail: a held shard waits for its checkpoints (its
        tenants do not listen), or the store's link has been down for too long."""
        problems = [
            f"shard {shard} waits for its checkpoints: {why}"
            for shard, why in sorted(self.waiting.items())
        ]
        store = self._store
        if store is not None and (since := store.down_since) is not None:
            down = time.monotonic() - since
            if down > LEASE_DOWN_LIMIT:
                why = store.last_error or "connecting"
                problems.append(f"checkpoint store down for {down:.0f} s: {why}")
        return "; ".join(problems) or None

    def trouble(self) -> str | None:
        """Why readiness should fail: another deployment or shard space on our presence
        exchange, or the lease connection down for too long."""
        conflict = self.leases.trouble()
        if conflict is not None:
            return conflict
        since = self.leases.link.down_since
        if since is None:
            return None
        down = time.monotonic() - since
        if down <= LEASE_DOWN_LIMIT:
            return None
        why = self.leases.link.last_error or "connecting"
        return f"lease connection down for {down:.0f} s: {why}"

    # -- running -----------------------------------------------------------------------

    async def run(self) -> None:
        """Follow the lease changes until the manager closes; then stop every shard."""
        changes = self.leases.changes()  # subscribed now: ``owned`` below adds up with it
        try:
            for shard in sorted(self.leases.owned):
                self._note(shard, "acquired", None)
                self._acquired(shard)
            async for change in changes:
                if change.kind == "acquired":
                    self._note(change.shard, "acquired", None)
                    if change.shard in self.leases.owned:  # not released since
                        self._acquired(change.shard)
                else:
                    reason = change.reason or "connection_lost"
                    self._note(change.shard, "released", reason)
                    await self._released(change.shard)
        finally:
            await self._stop_all()

    async def shutdown(self, grace: float) -> None:
        """SIGTERM: hand every shard over. The manager's gate stops each shard's
        listeners before its lease goes; then the goodbye, then the connection."""
        try:
            await self.leases.close(grace=grace)
        except Exception:  # a crash of the manager's loop: shown, and shutdown goes on
            log.exception("lease manager failed; its connection is closed")
        await self._stop_all()

    async def before_release(self, shard: int, reason: ReleaseReason) -> None:
        """The manager's gate for a planned release: stop the shard's listeners and let
        their last commit finish; the lease queue is deleted after this returns."""
        entry = self._shards.get(shard)
        if entry is not None:
            log.info(
                "handing over shard",
                extra={"replica": self.leases.replica_id, "shard": shard, "reason": reason},
            )
            await self._finish(shard, entry)
            # Their last Vers on the broker before the lease goes: the next owner reads
            # them first. Bounded, like the gate; a late flush is logged by the stream.
            if not await self._checkpoints.flush(self._flush_timeout):
                log.warning(
                    "checkpoints not confirmed by the broker before the handoff",
                    extra={"shard": shard},
                )

    async def _stop_all(self) -> None:
        entries = list(self._shards.items())
        for _, entry in entries:
            self._signal(entry)
        await asyncio.gather(*(self._finish(shard, entry) for shard, entry in entries))

    def _acquired(self, shard: int) -> None:
        if shard in self._shards:
            return
        acquired_at = self._monotonic()
        entry = _Shard(
            [self._make_listener(t, self._gap_probe(acquired_at)) for t in self.tenants_of(shard)],
            asyncio.Event(),
        )
        entry.task = asyncio.create_task(self._serve(shard, entry), name=f"shard:{shard}")
        self._shards[shard] = entry
        self._observer.owned_shards(len(self._shards))
        log.info(
            "shard started",
            extra={
                "replica": self.leases.replica_id,
                "shard": shard,
                "tenants": [lst.tenant for lst in entry.listeners],
            },
        )

    async def _released(self, shard: int) -> None:
        # Every shard no longer held stops now, not one after the other: a lost
        # connection reports all of them at once, and each may hold open polls.
        gone = [(s, e) for s, e in self._shards.items() if s not in self.leases.owned]
        for _, stopping in gone:
            self._signal(stopping)
        entry = self._shards.get(shard)
        if entry is not None:
            await self._finish(shard, entry)

    def _signal(self, entry: _Shard) -> None:
        entry.stopped.set()
        for listener in entry.listeners:
            listener.stop()

    async def _finish(self, shard: int, entry: _Shard) -> None:
        """Stop ``entry``'s listeners and await its task (cancelled past the timeout)."""
        self._signal(entry)
        task = entry.task
        if task is not None:
            _, pending = await asyncio.wait([task], timeout=self._stop_timeout)
            for late in pending:
                late.cancel()
            await asyncio.gather(task, return_exceptions=True)
        for listener in entry.listeners:
            # The next owner's fetch voids it anyway; forgetting it now means nothing here
            # can use it meanwhile (the fence stops any new fetch).
            listener.client.tokens.invalidate()
        if self._shards.get(shard) is entry:
            del self._shards[shard]
            self._observer.owned_shards(len(self._shards))

    async def _serve(self, shard: int, entry: _Shard) -> None:
        if not await self._sync_checkpoints(shard, entry.listeners, entry.stopped):
            return  # let go while still waiting
        await asyncio.gather(
            *(self._supervised(shard, entry, i) for i in range(len(entry.listeners)))
        )

    async def _sync_checkpoints(
        self, shard: int, listeners: Sequence[Listener], stopped: asyncio.Event
    ) -> bool:
        """Newest of journal and broker wins: a newer broker Ver is written to the
        journal before the tenant's first ``listen``. A read that fails or does not
        finish, or a journal that refuses the Ver, is tried again with backoff while the
        tenants wait (never a bootstrap from a guess); False when the shard was let go
        meanwhile."""
        if not listeners:
            return True
        names = [lst.tenant for lst in listeners]
        attempt = 0
        throttle = LogThrottle(every=WAIT_LOG_EVERY)
        try:
            while not stopped.is_set():
                try:
                    latest = await asyncio.wait_for(
                        self._checkpoints.latest(shard, names), self._checkpoint_timeout
                    )
                    await self._store_checkpoints(listeners, latest)
                    break
                except (CheckpointUnavailable, TimeoutError) as exc:
                    why = str(exc) or "the read did not finish in time"
                except JournalError as exc:
                    why = f"journal: cannot store the broker's checkpoint: {exc}"
                self._set_waiting(shard, why, listeners)
                suppressed = throttle.admit(self._monotonic())
                if suppressed is not None:
                    log.warning(
                        "shard waits for its checkpoints",
                        extra={
                            "replica": self.leases.replica_id,
                            "shard": shard,
                            "error": why,
                            "suppressed": suppressed,
                        },
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopped.wait(), self._checkpoint_backoff.delay(attempt))
                attempt += 1
            else:
                return False
        finally:
            if self.waiting.pop(shard, None) is not None:
                self._observer.checkpoint_waiting(len(self.waiting))
                for listener in listeners:
                    listener.status.last_error = None
        if attempt:
            log.info("shard checkpoints read", extra={"shard": shard, "after_failures": attempt})
        return True

    @staticmethod
    async def _store_checkpoints(listeners: Sequence[Listener], latest: dict[str, int]) -> None:
        """Each broker Ver newer than the journal's goes into the journal."""
        for listener in listeners:
            ver = latest.get(listener.tenant)
            if ver is None:
                continue
            local = await listener.journal.checkpoint(listener.tenant)
            if local is None or ver > local:
                await listener.journal.append(
                    listener.tenant, [], route=listener.route, checkpoint=ver
                )
                log.info(
                    "checkpoint taken from the broker",
                    extra={"tenant": listener.tenant, "ver": ver, "journal_ver": local},
                )

    def _set_waiting(self, shard: int, why: str, listeners: Sequence[Listener]) -> None:
        """The shard's tenants wait: readiness, status and each tenant say why."""
        self.waiting[shard] = why
        self._observer.checkpoint_waiting(len(self.waiting))
        for listener in listeners:
            listener.status.last_error = f"waiting for checkpoints: {why}"

    async def _supervised(self, shard: int, entry: _Shard, index: int) -> None:
        """Run one listener; a crash (a bug) shows it failed and restarts it with backoff.
        A listener that let its tenant go by itself (the fence said "not owner") while
        the shard is still ours is replaced once the lease is confirmed again."""
        stopped = entry.stopped
        crashes = 0
        while not stopped.is_set():
            listener = entry.listeners[index]
            name = f"listen:{listener.tenant}"
            try:
                await listener.run()
            except Exception as exc:  # logged with its traceback, then restarted
                crashes += 1
                self.crashes[name] = crashes
                log.exception("worker crashed, restarting", extra={"task": name})
                listener.crashed(f"internal error: {type(exc).__name__}: {exc}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopped.wait(), self._restart_backoff.delay(crashes - 1))
                continue
            if stopped.is_set() or listener.status.state != "stopped":
                return  # stopped by us, or its journal closed (shutdown)
            # Let go by the fence, but not by us: the shard's release is on its way, or
            # the lease's freshness lapsed for a moment and the next confirm renews it.
            if not await self._held_again(shard, stopped):
                return
            entry.listeners[index] = self._make_listener(listener.tenant, lambda: None)
            self.resumed[listener.tenant] = self.resumed.get(listener.tenant, 0) + 1
            self._observer.fence_resumed()
            log.warning(
                "tenant let go by the fence while its shard is still held; listening again",
                extra={
                    "replica": self.leases.replica_id,
                    "shard": shard,
                    "tenant": listener.tenant,
                },
            )

    async def _held_again(self, shard: int, stopped: asyncio.Event) -> bool:
        """Wait until the fence says this replica holds ``shard`` again (True) or the
        shard is let go (False). A shard seen out of ``owned`` is gone for this entry:
        its release is on its way to :meth:`run`, and a later acquisition starts a new
        entry from the broker's checkpoint, never this one from the journal."""
        while not stopped.is_set():
            if shard not in self.leases.owned:
                return False
            if self.leases.holds(shard):
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopped.wait(), self._recheck)
        return False

    def _gap_probe(self, acquired_at: float) -> Callable[[], None]:
        """The listener's ``on_listen``: the first listen sent observes the takeover gap."""
        sent = False

        def on_listen() -> None:
            nonlocal sent
            if not sent:
                sent = True
                self._observer.takeover_gap(self._monotonic() - acquired_at)

        return on_listen

    def _note(
        self, shard: int, kind: Literal["acquired", "released"], reason: ReleaseReason | None
    ) -> None:
        self.last_handoff = Handoff(shard, kind, reason, self._clock())
        if kind == "acquired":
            self._observer.shard_acquired()
        else:
            self._observer.shard_released(reason or "connection_lost")
