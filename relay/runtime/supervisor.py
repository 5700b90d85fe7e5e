"""The relay service: owns the listeners, the drainers and housekeeping, and stops them
in order.

Where it sits: built by :func:`relay.app.wiring.build_service` from the settings, run by the
``run`` and ``demo`` commands, observed by :mod:`relay.ops.http` (health, metrics, status).

Every task it starts is owned here and awaited on shutdown. Shutdown is ordered:
readiness goes false, listeners stop (an open long poll is dropped; nothing it had
answered is lost, because answers are committed before the next poll), sinks drain
in-flight deliveries up to ``shutdown_timeout``, housekeeping stops, and the caller's
exit stack then closes the sinks and the journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from relay.core.backoff import Backoff
from relay.core.health import HealthWindow
from relay.core.throttle import LogThrottle
from relay.journal import Journal, JournalError, JournalStats
from relay.runtime.callback_status import CallbackTally
from relay.runtime.drainer import Drainer
from relay.runtime.listener import Listener
from relay.runtime.observer import Observer
from relay.runtime.ownership import ShardRunner
from relay.runtime.polling import DirectoryPollers
from relay.runtime.status import (
    Health,
    Liveness,
    ShardingStatus,
    SinkDescription,
    Status,
    build_status,
)
from relay.sinks.blocking import blocked_text

__all__ = ["RelayService", "silent_for"]

log = logging.getLogger("relay.runtime.supervisor")

# How often housekeeping logs a journal error again while it lasts (the first is logged).
JOURNAL_LOG_EVERY = 60.0


def silent_for(listener: Listener, now: float) -> float | None:
    """Seconds Exmail has left ``listener``'s tenant unanswered, once that is longer than
    its ``silence_limit`` (readiness fails); ``None`` otherwise. A tenant paused on a full
    journal, stopped, or waiting for its turn to fetch a token is not waiting for Exmail."""
    status = listener.status
    since = status.unanswered_since
    if since is None or status.state in ("paused", "stopped", "waiting"):
        return None
    silent = now - since
    return silent if silent > listener.silence_limit else None


class RelayService:
    """Runs until the ``stop`` event given to :meth:`run` is set."""

    def __init__(
        self,
        *,
        journal: Journal,
        listeners: Sequence[Listener],
        drainers: Sequence[Drainer],
        shutdown_timeout: float = 10.0,
        prune_interval: float = 60.0,
        stats_interval: float = 2.0,
        describe_sinks: Callable[[], Mapping[str, SinkDescription]] | None = None,
        restart_backoff: Backoff | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        observer: Observer | None = None,
        retired_orphans: Mapping[str, int] | None = None,
        retired_at: float | None = None,
        runner: ShardRunner | None = None,
        sharding: Callable[[], ShardingStatus] | None = None,
        release_after: float | None = None,
        delivery_links: Sequence[str] = (),
        health_interval: float = 1.0,
        callbacks: Sequence[CallbackTally] = (),
        pollers: DirectoryPollers | None = None,
    ) -> None:
        self.journal = journal
        # The api2 tenants (no listener: callbacks), shown on the status page, never in
        # readiness (relay.runtime.callback_status says why).
        self.callbacks = tuple(callbacks)
        # Their directory polls (relay.runtime.polling): one task, stopped with listeners.
        self.pollers = pollers
        # Lease mode: the runner starts and stops the listeners of the held shards
        # (``listeners`` is then empty); static mode: ``listeners`` run all along.
        self.runner = runner
        self._sharding = sharding or (runner.describe if runner is not None else None)
        self._observer = observer or Observer()
        self.listeners = list(listeners)
        self.drainers = list(drainers)
        self.shutdown_timeout = shutdown_timeout
        self.prune_interval = prune_interval
        self.stats_interval = stats_interval
        self._describe_sinks = describe_sinks
        self._clock = clock
        self._monotonic = monotonic  # for intervals: a step of the wall clock is no time
        self.started_at = clock()
        self.stopping = False
        self.running = False
        self.last_stats: JournalStats | None = None
        self.last_prune: tuple[float, int] | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stop = asyncio.Event()
        self._restart_backoff = restart_backoff or Backoff(base=1.0, cap=60.0)
        self.crashes: dict[str, int] = {}
        # Pending deliveries of unconfigured sinks that wiring retired to dead letters.
        self.retired_orphans = dict(retired_orphans or {})
        self.retired_at = retired_at
        # What housekeeping's last recount / stats / prune failed with (readiness shows it).
        self.journal_errors: dict[str, str] = {}
        self._journal_logged: dict[str, LogThrottle] = {}
        # Lease mode: a replica whose journal refuses writes, or whose delivery link
        # (``delivery_links``: the sinks whose broker connection counts) is down, for
        # ``release_after`` lets its shards go (docs/leases.md, "Health releases leases").
        self.fitness = (
            HealthWindow(release_after)
            if runner is not None and release_after is not None
            else None
        )
        self._delivery_links = tuple(delivery_links)
        self._health_interval = health_interval
        self._unfit: str | None = None  # the verdict last logged

    def __repr__(self) -> str:
        return f"RelayService(tenants={len(self.listeners)}, sinks={len(self.drainers)})"

    # -- running -----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self.running = True
        self._stop = stop
        for drainer in self.drainers:
            self._spawn(
                f"drain:{drainer.name}", self._supervised(f"drain:{drainer.name}", drainer.run)
            )
        for listener in self.listeners:
            self._spawn(
                f"listen:{listener.tenant}",
                self._supervised(f"listen:{listener.tenant}", listener.run, listener.crashed),
            )
        if self.runner is not None:
            self._spawn("leases", self.runner.run())
        if self.pollers is not None:
            self._spawn("listen:directory", self.pollers.run())
        if self.fitness is not None:
            self._spawn("health", self._watch_health())
        self._spawn("housekeeping", self._housekeeping())
        log.info(
            "relay started",
            extra={"tenants": len(self.listeners), "sinks": [d.name for d in self.drainers]},
        )
        stopper = asyncio.ensure_future(stop.wait())
        try:
            # A task that dies is a bug: surface it instead of running half a relay.
            while not stop.is_set():
                done, _ = await asyncio.wait(
                    [stopper, *self._tasks.values()], return_when=asyncio.FIRST_COMPLETED
                )
                for name, task in list(self._tasks.items()):
                    if task in done and not task.cancelled() and task.exception() is not None:
                        raise RuntimeError(f"task {name} crashed") from task.exception()
                    if task in done:
                        del self._tasks[name]
        finally:
            stopper.cancel()
            await self.shutdown()

    def _spawn(self, name: str, coro: Any) -> None:
        self._tasks[name] = asyncio.create_task(coro, name=name)

    async def _supervised(
        self,
        name: str,
        run: Callable[[], Awaitable[None]],
        on_crash: Callable[[str], None] | None = None,
    ) -> None:
        """Run one worker; if it crashes (a bug), log the traceback and restart it with
        backoff, so one tenant's or one sink's bug never stops the others."""
        crashes = 0
        while not self.stopping:
            try:
                await run()
                return
            except Exception as exc:  # logged with its traceback, then restarted
                crashes += 1
                self.crashes[name] = crashes
                log.exception(
                    "worker crashed, restarting", extra={"task": name, "crashes": crashes}
                )
                if on_crash is not None:
                    on_crash(f"internal error: {type(exc).__name__}: {exc}")
            delay = self._restart_backoff.delay(crashes - 1)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)

    async def shutdown(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        started = self._monotonic()
        log.info("shutting down", extra={"grace_seconds": self.shutdown_timeout})
        if self.runner is not None:
            await self.runner.shutdown(self.shutdown_timeout)
        for listener in self.listeners:
            listener.stop()
        if self.pollers is not None:
            self.pollers.close()  # its task ("listen:directory") is awaited with them
        listener_tasks = [t for n, t in self._tasks.items() if n.startswith("listen:")]
        await self._bounded(listener_tasks, self.shutdown_timeout)
        remaining = max(0.5, self.shutdown_timeout - (self._monotonic() - started))
        await asyncio.gather(*(drainer.stop(remaining) for drainer in self.drainers))
        drain_tasks = [t for n, t in self._tasks.items() if n.startswith("drain:")]
        await self._bounded(drain_tasks, 1.0)
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()
        self.running = False
        log.info("relay stopped", extra={"seconds": round(self._monotonic() - started, 3)})

    @staticmethod
    async def _bounded(tasks: Sequence[asyncio.Task[None]], seconds: float) -> None:
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=seconds)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _housekeeping(self) -> None:
        """Recount, refresh the stats, prune; forever. A :class:`JournalError` (a full
        disk, a damaged page) fails that step only: readiness shows it as ``journal``,
        it is logged once a minute while it lasts, and the next round tries again."""
        next_prune = self._monotonic() + self.prune_interval
        while True:
            try:
                await self.journal.recount()  # another process's replay, even when idle
            except JournalError as exc:
                self._journal_failed("recount", exc)
            else:
                self._journal_ok("recount")
            await self.refresh_stats()
            if self._monotonic() >= next_prune:
                next_prune = self._monotonic() + self.prune_interval
                try:
                    pruned = await self.journal.prune()
                except JournalError as exc:
                    self._journal_failed("prune", exc)
                else:
                    self._journal_ok("prune")
                    self.last_prune = (self._clock(), pruned)
                    if pruned:
                        log.info("journal pruned", extra={"events": pruned})
            await asyncio.sleep(self.stats_interval)

    async def _watch_health(self) -> None:
        """Lease mode: sample what a shard owner needs, about once a second, into the
        window the lease manager asks (:meth:`unfit`)."""
        assert self.fitness is not None
        while True:
            journal = self._journal_trouble()
            if journal is None:
                # With its shards gone no worker writes: the probe says when room is back.
                probe = await self.journal.write_check(within=2 * self._health_interval)
                journal = None if probe is None else f"not writable: {probe}"
            now = self._monotonic()
            self.fitness.observe("journal", journal, now)
            down = [
                d.name
                for d in self.drainers
                if d.name in self._delivery_links and not d.sink.connected
            ]
            self.fitness.observe("delivery link", "down" if down else None, now)
            unfit = self.unfit()
            if (unfit is None) != (self._unfit is None):
                if unfit is not None:
                    log.error(
                        "replica unhealthy; releasing every shard and taking none",
                        extra={"reason": unfit},
                    )
                else:
                    log.warning("replica healthy again; rejoining", extra={"was": self._unfit})
            self._unfit = unfit
            self._observer.lease_health(self.fitness.failing(now), unfit is not None)
            await asyncio.sleep(self._health_interval)

    def unfit(self) -> str | None:
        """Why this replica must hold no shard now (lease mode), or ``None``."""
        if self.fitness is None:
            return None
        return self.fitness.unfit(self._monotonic())

    def _journal_failed(self, step: str, exc: JournalError) -> None:
        self.journal_errors[step] = str(exc)
        throttle = self._journal_logged.setdefault(step, LogThrottle(every=JOURNAL_LOG_EVERY))
        if throttle.admit(self._monotonic()) is not None:
            log.error(f"journal {step} failed", extra={"error": str(exc)})

    def _journal_ok(self, step: str) -> None:
        if self.journal_errors.pop(step, None) is not None:
            self._journal_logged.pop(step, None)
            log.info(f"journal {step} works again")

    async def refresh_stats(self) -> JournalStats | None:
        try:
            stats = await self.journal.stats()
        except JournalError as exc:
            self._journal_failed("stats", exc)
            return None
        self._journal_ok("stats")
        self.last_stats = stats
        now = self._clock()
        self._observer.journal(stats, commits=self.journal.commits, backpressure=self.journal.full)
        for drainer in self.drainers:
            sink = stats.sinks.get(drainer.name)
            pending = sink.pending if sink else 0
            oldest = sink.oldest_pending_created if sink else None
            drainer.observer.backlog(pending, 0.0 if oldest is None else max(0.0, now - oldest))
        return stats

    # -- health and status -------------------------------------------------------------

    async def health(self) -> Health:
        ok: list[str] = []
        failing: dict[str, str] = {}
        if self.stopping:
            failing["service"] = "shutting down"
        journal = self._journal_trouble()
        if journal is None and (probe := await self.journal.write_check()) is not None:
            journal = f"not writable: {probe}"
        if journal is None and self.journal_errors:
            journal = "; ".join(dict.fromkeys(self.journal_errors.values()))
        if journal is None:
            ok.append("journal")
        else:
            failing["journal"] = journal
        reason = self.journal.backpressure_reason()
        if reason:
            failing["backpressure"] = reason
        for drainer in self.drainers:
            part = f"sink:{drainer.name}"
            if drainer.disabled_reason is not None:
                failing[part] = f"disabled: {drainer.disabled_reason}"
            elif drainer.failing:
                failing[part] = f"failing: {drainer.last_error}"
            elif not drainer.sink.connected:
                why = drainer.last_error or getattr(drainer.sink, "last_error", None)
                failing[part] = f"not connected: {why or 'connecting'}"
            elif (block := getattr(drainer.sink, "block_status", None)) is not None:
                # A resource alarm: connected, but the broker takes nothing until it clears.
                held = max(0.0, self._clock() - float(block["since"]))
                failing[part] = blocked_text(str(block["reason"]), held)
            else:
                ok.append(part)
        if self.runner is not None:
            lease_trouble = self.runner.trouble()
            if (unfit := self.runner.leases.health()) is not None:
                lease_trouble = f"unhealthy, every shard released: {unfit}"
            if lease_trouble is None:
                ok.append("leases")
            else:
                failing["leases"] = lease_trouble
            if (checkpoint_trouble := self.runner.checkpoint_trouble()) is None:
                ok.append("checkpoints")
            else:
                failing["checkpoints"] = checkpoint_trouble
        for listener in self.all_listeners():
            part = f"tenant:{listener.tenant}"
            if listener.status.state == "failed":
                failing[part] = f"failed: {listener.status.last_error}"
            elif (silent := silent_for(listener, self._clock())) is not None:
                failing[part] = f"no answer from Exmail for {silent:.0f} s"
            else:
                ok.append(part)
        return Health(tuple(ok), failing)

    def _journal_trouble(self) -> str | None:
        """What a worker last heard from a journal write it is still retrying: a
        listener holding a batch it could not commit, a drainer holding outcomes. A
        probe alone can pass (a tiny write may fit where a batch does not)."""
        for listener in self.all_listeners():
            if listener.status.journal_error is not None:
                return listener.status.journal_error
        for drainer in self.drainers:
            refusals = drainer.refusals
            if refusals.error is not None:
                verb = "not readable" if refusals.read_failed else "not writable"
                return f"{verb}: {refusals.error.removeprefix('journal: ')}"
        return None

    def task_alive(self, name: str) -> bool:
        task = self._tasks.get(name)
        return task is not None and not task.done()

    def alive(self) -> Liveness:
        """Liveness: the supervisor's tasks are alive (never depends on upstream)."""
        dead = tuple(name for name, task in self._tasks.items() if task.done())
        return Liveness(alive=not dead and (self.running or not self.stopping), dead_tasks=dead)

    async def status(self, *, show_content: bool = False, recent: int = 50) -> Status:
        stats = self.last_stats or await self.refresh_stats()
        return build_status(
            now=self._clock(),
            started_at=self.started_at,
            stopping=self.stopping,
            listeners=[listener.status for listener in self.all_listeners()],
            drainers=self.drainers,
            journal=self.journal,
            stats=stats,
            last_prune=self.last_prune,
            descriptions=self._describe_sinks() if self._describe_sinks else {},
            show_content=show_content,
            recent=recent,
            retired=self.retired_orphans,
            retired_at=self.retired_at,
            sharding=self._sharding() if self._sharding is not None else None,
            callbacks=self.callbacks,
        )

    def all_listeners(self) -> list[Listener]:
        """The listeners running now: the static ones, or those of the held shards."""
        if self.runner is None:
            return self.listeners
        return [*self.listeners, *self.runner.listeners]
