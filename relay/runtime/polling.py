"""Which api2 tenants' directories this replica polls, and the tasks that poll them.

Where it sits: built by :mod:`relay.app.directory2`, run by
:class:`relay.runtime.supervisor.RelayService` as one task (``directory``). Static
sharding: every api2 tenant of this replica's shard is polled all along. Lease mode: a
tenant is polled only while this replica holds its shard, as its listeners would be
(:class:`relay.runtime.ownership.ShardRunner`): the pollers follow the lease manager's
changes (their own subscription), and a planned release stops them before the lease
goes (:meth:`before_release`, chained after the runner's gate).

An operator's asks (:mod:`relay.runtime.pollasks`: confirm a held listing, poll now) go
to the tenant's running poller (:meth:`DirectoryPollers.confirm_held`,
:meth:`DirectoryPollers.poll_now`); a tenant not polled here now is :class:`NotPolled`.

Every poller task is owned here: kept by tenant, awaited when its shard goes or on
:meth:`close`. A poller that crashes (a bug) is logged with its traceback and restarted
with backoff; it never stops another tenant's polls, nor the relay. A poller refused by
the token fence (outcome ``fenced``) while this replica still holds the shard (the
lease's freshness lapsed for a moment) polls again once the fence says the shard is
held; if the shard is really going, its release stops the poller first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from relay.core.backoff import Backoff
from relay.core.shards import ReleaseReason, shard_of
from relay.runtime.directory2 import DirectoryPoller, PollState
from relay.runtime.leases import LeaseManager
from relay.runtime.pollasks import Confirmed, NothingHeld, NotPolled, answer

__all__ = ["DirectoryPollers"]

log = logging.getLogger("relay.runtime.polling")

MakePoller = Callable[[str, PollState], DirectoryPoller]


@dataclass(slots=True)
class _Running:
    poller: DirectoryPoller
    task: asyncio.Task[None]


class DirectoryPollers:
    """Runs the pollers of ``states``' tenants this replica should poll (all of them
    without ``leases``). Run with :meth:`run`; :meth:`close` stops it."""

    def __init__(
        self,
        *,
        states: Mapping[str, PollState],
        make_poller: MakePoller,
        leases: LeaseManager | None = None,
        stop_timeout: float = 5.0,
        restart_backoff: Backoff | None = None,
        recheck: float = 0.2,
    ) -> None:
        self.states = dict(states)
        self._make = make_poller
        self._leases = leases
        self._stop_timeout = stop_timeout
        self._restart = restart_backoff or Backoff(base=1.0, cap=60.0)
        self._running: dict[str, _Running] = {}
        # Pollers told to stop whose task has not ended yet: kept (owned) until it has,
        # so a release gate that comes after the release event still waits for them.
        self._stopping: dict[str, _Running] = {}
        self._closed = asyncio.Event()
        self.crashes: dict[str, int] = {}
        self.resumed: dict[str, int] = {}  # fenced while the shard stayed held, polled again
        self._recheck = recheck

    def __repr__(self) -> str:
        return f"DirectoryPollers(tenants={len(self.states)}, running={sorted(self._running)})"

    @property
    def running(self) -> frozenset[str]:
        return frozenset(self._running)

    def polls(self, tenant: str) -> bool:
        """Whether this replica polls ``tenant`` now (lease mode: holds its shard)."""
        entry = self._running.get(tenant)
        return entry is not None and not entry.poller.stopped and entry.poller.state.polling

    async def confirm_held(self, tenant: str, *, since: float | None, within: float) -> Confirmed:
        """Commit ``tenant``'s held listing now, as the poll that confirms it would;
        ``since``: only if it is the hold held since then. Waits ``within`` seconds for a
        poll under way (:func:`relay.runtime.pollasks.answer`)."""
        poller = self._poller(tenant)
        if poller.state.held is None:  # nothing to wait for
            raise NothingHeld(tenant)
        done: Confirmed = await answer(poller.ask("confirm", since=since), tenant, within)
        return done

    async def poll_now(self, tenant: str, *, within: float) -> str:
        """Poll ``tenant`` now (after a poll under way); the outcome, as a poll's."""
        outcome: str = await answer(self._poller(tenant).ask("poll"), tenant, within)
        return outcome

    def _poller(self, tenant: str) -> DirectoryPoller:
        entry = self._running.get(tenant)
        if entry is None or self._closed.is_set():
            raise NotPolled(tenant)
        return entry.poller

    def _tenants_of(self, shard: int) -> list[str]:
        assert self._leases is not None
        return [t for t in self.states if shard_of(t, self._leases.shards) == shard]

    async def run(self) -> None:
        """Poll until :meth:`close` (lease mode: follow the held shards)."""
        try:
            if self._leases is None:
                self._start(self.states)
                await self._closed.wait()
                return
            changes = self._leases.changes()  # subscribed now: ``owned`` adds up with it
            for shard in sorted(self._leases.owned):
                self._start(self._tenants_of(shard))
            closing = asyncio.ensure_future(self._closed.wait())
            try:
                iterator = aiter(changes)
                while not self._closed.is_set():
                    change = asyncio.ensure_future(anext(iterator))
                    await asyncio.wait((change, closing), return_when=asyncio.FIRST_COMPLETED)
                    if not change.done():
                        change.cancel()
                        await asyncio.gather(change, return_exceptions=True)
                        break
                    try:
                        got = change.result()
                    except StopAsyncIteration:
                        break  # the manager closed
                    if got.kind == "acquired" and got.shard in self._leases.owned:
                        self._start(self._tenants_of(got.shard))
                    elif got.kind == "released":
                        await self._stop(self._tenants_of(got.shard))
            finally:
                closing.cancel()
                await asyncio.gather(closing, return_exceptions=True)
                with contextlib.suppress(Exception):
                    await changes.aclose()  # type: ignore[attr-defined]
        finally:
            await self._stop([*self._running, *self._stopping])

    async def before_release(self, shard: int, reason: ReleaseReason) -> None:
        """A planned release: the shard's pollers stop (a commit under way finishes)
        before the lease goes, so the next owner never polls beside this one."""
        await self._stop(self._tenants_of(shard))

    def close(self) -> None:
        self._closed.set()

    def _start(self, tenants: Iterable[str]) -> None:
        for tenant in tenants:
            if tenant in self._running or self._closed.is_set():
                continue
            poller = self._make(tenant, self.states[tenant])
            task = asyncio.create_task(self._supervised(poller), name=f"directory:{tenant}")
            self._running[tenant] = _Running(poller, task)
            log.info("directory polling started", extra={"tenant": tenant})

    async def _stop(self, tenants: Iterable[str]) -> None:
        names = list(tenants)
        for tenant in names:
            if (entry := self._running.pop(tenant, None)) is not None:
                entry.poller.stop()
                self._stopping[tenant] = entry
        gone = [self._stopping[t] for t in names if t in self._stopping]
        if not gone:
            return
        tasks = [entry.task for entry in gone]
        try:
            _, late = await asyncio.wait(tasks, timeout=self._stop_timeout)
            for task in late:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            # Cancelled while waiting (a release gate past its grace): the tasks are
            # cancelled and stay in _stopping, so the final stop still awaits them.
            for task in tasks:
                if not task.done():
                    task.cancel()
        for entry in gone:
            if self._stopping.get(entry.poller.tenant) is entry:
                del self._stopping[entry.poller.tenant]
                entry.poller.state.polling = False
                log.info("directory polling stopped", extra={"tenant": entry.poller.tenant})

    async def _supervised(self, poller: DirectoryPoller) -> None:
        crashes = 0
        while not poller.stopped:
            try:
                await poller.run()
            except Exception as exc:  # logged with its traceback, then restarted
                crashes += 1
                self.crashes[poller.tenant] = crashes
                log.exception(
                    "directory poller crashed, restarting", extra={"tenant": poller.tenant}
                )
                poller.state.last_error = f"internal error: {type(exc).__name__}: {exc}"
                await poller.wait_stopped(self._restart.delay(crashes - 1))
                continue
            # Returned unstopped: fenced. A release on its way stops it; a freshness
            # lapse ends with the next confirm, and the tenant is ours to poll again.
            if not await self._held_again(poller):
                return
            self.resumed[poller.tenant] = self.resumed.get(poller.tenant, 0) + 1
            log.warning(
                "directory polls fenced while the shard is still held; polling again",
                extra={"tenant": poller.tenant},
            )

    async def _held_again(self, poller: DirectoryPoller) -> bool:
        """Wait until the fence says this replica holds the poller's shard again (True)
        or the poller is stopped (False; static mode has no fence)."""
        leases = self._leases
        if leases is None:
            return False
        shard = shard_of(poller.tenant, leases.shards)
        while not poller.stopped:
            if shard not in leases.owned:
                return False  # lost or released: a later acquisition starts a new poller
            if leases.holds(shard):
                return True
            await poller.wait_stopped(self._recheck)
        return False
