"""Directory events for a tenant on the second API: its whole directory, listed on an
interval and diffed against the last listing the journal kept.

Where it sits: one :class:`DirectoryPoller` per ``api = "api2"`` tenant this replica
polls, run by :class:`relay.runtime.polling.DirectoryPollers`. The second API has no
change feed (notes §10), so each poll is ``department/list`` (from the root, id 1) and
``user/list?department_id=1&fetch_child=1``; :func:`relay.core.listing.diff_listing`
turns the difference into ``exmail.user.*`` events, committed in one transaction with
the rows of the stored listing they change (``Journal.append(listing=...)``).

Failures: a listing that fails (any Exmail error of either call), cannot be read
(:class:`relay.runtime.members.BadListing`) or is implausible (empty after a non-empty
one) commits nothing and keeps the stored listing: never "everyone deleted" because an
answer broke. The next try comes after a capped backoff (at most the interval). A
listing that would delete too many members at once (:mod:`relay.core.listing_guard`) is
held: nothing committed, outcome ``held``, a warning, ``state.held`` and the
``exmail_relay_directory_held_deletions`` gauge; it is committed once the same
deletions are found on ``confirm_polls`` polls in a row, or when an operator
confirms it (:meth:`DirectoryPoller.ask`, served between polls: :mod:`relay.runtime.pollasks`
says why). Mail is not this poller's business: an api2 tenant's mail arrives by callback
on the HTTP server, so directory trouble never delays it.

Lease mode (a ``carrier``, :class:`relay.runtime.listings.ListingStore`): before its first
poll a poller reads the newest listing the broker keeps for the tenant and stores it when
it is newer than the journal's, so a new owner diffs against the old owner's last
committed listing instead of making a baseline. A read that fails makes the poll fail
(outcome ``waiting``): nothing is listed until a read completes. After every poll that
changed the stored listing, the whole listing is published (a held one never is:
it was not committed); one that fails is owed and
sent again after the next poll (docs/leases.md, "Directory polls of api2 tenants").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Literal, Protocol

from relay.core.backoff import Backoff
from relay.core.events import Event
from relay.core.listing import (
    ListingDiff,
    StoredMember,
    fingerprint,
)
from relay.core.listing_guard import DeletionGuard, HeldListing, Verdict, judge
from relay.core.throttle import LogThrottle
from relay.exmail import ExmailError, TokenFenced
from relay.exmail2 import Department, Member
from relay.journal import Journal, JournalError, listing_write
from relay.runtime.directory import classify
from relay.runtime.listings import ListingCarrier, ListingUnavailable
from relay.runtime.members import ROOT, BadListing, Implausible, read_listing
from relay.runtime.observer import Observer
from relay.runtime.pollasks import Ask, Asks, Confirmed, HoldChanged, Kind, NothingHeld, NotPolled
from relay.runtime.pollstate import DirectoryPollStatus, HeldStatus, PollState
from relay.runtime.stopping import until_stopped

__all__ = [
    "DirectoryClient",
    "DirectoryPollStatus",
    "DirectoryPoller",
    "HeldStatus",
    "PollState",
]

log = logging.getLogger("relay.runtime.directory2")

LOG_EVERY = 60.0

# A held listing's difference and the stored listing it was diffed against: what an
# operator's confirmation commits (the same as the poll that confirms it would).
_Pending = tuple[ListingDiff, Mapping[str, StoredMember] | None]


class DirectoryClient(Protocol):
    """What a poller calls (:class:`relay.exmail2.Exmail2Client` has both)."""

    async def department_list(self, id: int | None = None) -> list[Department]: ...

    async def user_list(
        self, department_id: int = 1, *, fetch_child: bool = False
    ) -> list[Member]: ...


Outcome = Literal[
    "changed",
    "unchanged",
    "baseline",
    "held",
    "malformed",
    "implausible",
    "journal",
    "fenced",
    "waiting",
]


class DirectoryPoller:
    """Polls one tenant's directory until :meth:`stop`. ``jitter``: each wait is the
    interval times a factor drawn from ``[1 - jitter, 1 + jitter]``, so tenants started
    together drift apart instead of listing at the same moment.

    ``turn`` (pacing, ``[sharding] takeover_rate``): awaited before the first listing
    of this poller (after a start or a takeover: a full listing, a bootstrap), until one
    listing has been read; the directory token is got in the same turn
    (:meth:`relay.exmail.TokenCache.turn`). It is what spreads the first polls of many
    tenants started together (the first poll itself has no jitter). Meanwhile
    ``state.waiting`` is true.

    ``guard``: when a listing is held for its deletions (:mod:`relay.core.listing_guard`).
    The hold lives here: a stopped poller forgets it (the next one holds again).

    :meth:`ask`: an operator's "confirm the held listing" or "poll now", served by
    :meth:`run` between polls (:mod:`relay.runtime.pollasks`)."""

    def __init__(
        self,
        *,
        tenant: str,
        client: DirectoryClient,
        journal: Journal,
        route: Callable[[Event], Sequence[str]],
        state: PollState,
        observer: Observer | None = None,
        bootstrap: Literal["skip", "snapshot"] = "skip",
        guard: DeletionGuard = DeletionGuard(),  # noqa: B008 (frozen: one shared default is fine)
        carrier: ListingCarrier | None = None,
        backoff: Backoff | None = None,
        jitter: float = 0.1,
        turn: Callable[[], Awaitable[object]] | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tenant = tenant
        self.client = client
        self.journal = journal
        self.route = route
        self.state = state
        self._observer = observer or Observer()
        self._bootstrap: Literal["skip", "snapshot"] = bootstrap
        self._guard = guard
        self._held: HeldListing | None = None
        self._pending: _Pending | None = None  # the held listing's difference
        self._asks = Asks()
        self._carrier = carrier
        self._adopted = carrier is None  # the broker's listing read (or none to read)
        self._owed: tuple[dict[str, StoredMember], float] | None = None  # to publish
        if carrier is not None:
            state.snapshot_owed = False
        self._backoff = backoff or Backoff(base=5.0, cap=state.interval)
        self._jitter = jitter
        self._turn = turn
        self._listed = False  # a listing was read since this poller started
        self._turn_seconds = 0.0  # of the poll under way: its wait for the turn
        self._clock = clock
        self._monotonic = monotonic
        self._stop = asyncio.Event()
        self._throttle = LogThrottle(every=LOG_EVERY)

    def __repr__(self) -> str:
        return f"DirectoryPoller({self.tenant!r}, interval={self.state.interval})"

    def stop(self) -> None:
        self._stop.set()
        self._asks.arrived.set()  # an idle loop wakes to see it

    def ask(self, kind: Kind, *, since: float | None = None) -> Ask:
        """Queue an operator's ask for :meth:`run` (:func:`relay.runtime.pollasks.answer`
        waits for it); :class:`NotPolled` when this poller is not polling."""
        if self._stop.is_set() or not self.state.polling:
            raise NotPolled(self.tenant)
        return self._asks.put(kind, since)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    async def wait_stopped(self, seconds: float) -> None:
        """Sleep ``seconds`` or until :meth:`stop`, whichever comes first."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def run(self) -> None:
        """Poll now, then every interval, until :meth:`stop` (or a fenced token: the
        tenant is another replica's now). Bugs go up to the owner."""
        self.state.polling = True
        try:
            while not self._stop.is_set():
                asked = self._asks.take("poll", every=True)  # answered by this poll
                # Stopped mid-listing: the poll is cancelled and nothing was committed.
                outcome = await until_stopped(self.poll(), self._stop)
                for ask in asked:
                    ask.settle(NotPolled(self.tenant) if outcome is None else outcome)
                if outcome is None or outcome == "fenced":
                    return
                await self._idle(self._next_delay())
        finally:
            self.state.polling = False
            self._asks.fail_all(NotPolled(self.tenant))
            if self._held is not None:  # not this poller's to hold any more
                self._keep(None)

    async def _idle(self, seconds: float) -> None:
        """Wait ``seconds`` between polls, serving confirmations meanwhile; an ask to
        poll (or :meth:`stop`) ends the wait."""
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        while not self._stop.is_set():
            self._asks.arrived.clear()
            if taken := self._asks.take("confirm"):
                await self._serve(taken[0])
                continue
            if self._asks.waiting("poll") or (left := until - loop.time()) <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._asks.arrived.wait(), left)

    async def _serve(self, ask: Ask) -> None:
        """Confirm the held listing for ``ask``; a bug goes to the caller and the owner."""
        try:
            done = await until_stopped(self._confirm(ask.since), self._stop)
        except (NothingHeld, HoldChanged, JournalError) as exc:
            ask.settle(exc)
            return
        except Exception as exc:
            ask.settle(exc)
            raise
        ask.settle(NotPolled(self.tenant) if done is None else done)

    async def _confirm(self, since: float | None) -> Confirmed:
        """Commit the held listing's difference, as the poll confirming it would."""
        held, pending = self._held, self._pending
        if held is None or pending is None:
            raise NothingHeld(self.tenant)
        if since is not None and since != held.since:
            raise HoldChanged(self.tenant, held)
        diff, before = pending
        # Served between polls by this poller alone: the stored listing is still the one
        # the held difference was taken from (a commit would have dropped the hold).
        await self._commit(diff, before, listed=held.listed)
        self._released(Verdict("confirm", held), by_operator=True)
        if self._owed is not None:
            await self._publish()
        return Confirmed(held, len(diff.events))

    def _next_delay(self) -> float:
        if self.state.failures:
            return self._backoff.delay(self.state.failures - 1)
        spread = 1.0 + self._jitter * (2.0 * random.random() - 1.0)
        return self.state.interval * spread

    async def poll(self) -> str:
        """One listing, diffed and committed. Its outcome: ``changed``, ``unchanged``,
        ``baseline``, ``held`` (too many deletions: nothing committed), or the failure
        (an Exmail fault kind, ``malformed``, ``implausible``, ``journal``, ``fenced``); a
        failure commits nothing."""
        started = self._monotonic()
        self.state.last_poll_at = self._clock()
        self._turn_seconds = 0.0
        outcome: str
        try:
            outcome = await self._poll()
        except TokenFenced:
            outcome, error = "fenced", None
        except ListingUnavailable as exc:
            outcome, error = "waiting", f"waiting for the listing snapshot: {exc}"
        except ExmailError as exc:
            outcome, error = classify(exc), f"directory listing: {exc}"
        except BadListing as exc:
            outcome, error = "malformed", f"directory listing: {exc}"
        except Implausible as exc:
            outcome, error = "implausible", f"directory listing refused: {exc}"
        except JournalError as exc:
            outcome, error = "journal", f"journal: {exc}"
        else:
            error = None
        seconds = self._monotonic() - started - self._turn_seconds  # the wait is not Exmail's
        self.state.last_seconds = seconds
        self.state.last_outcome = outcome
        self._observer.directory_poll(self.tenant, outcome, seconds)
        if error is not None:
            self._failed(outcome, error)
        elif outcome != "fenced":
            if self.state.failures:
                log.info(
                    "directory listing works again",
                    extra={"tenant": self.tenant, "after_failures": self.state.failures},
                )
            self.state.failures = 0
            self.state.last_ok_at = self._clock()
        if self._owed is not None:
            await self._publish()
        return outcome

    async def _publish(self) -> None:
        """Send the owed listing to the broker; kept owed when that fails."""
        assert self._carrier is not None and self._owed is not None
        members, at = self._owed
        try:
            await self._carrier.publish(self.tenant, members, at=at)
        except ListingUnavailable as exc:
            self.state.snapshot_error = str(exc)
            log.warning(
                "directory listing not published; sent again after the next poll",
                extra={"tenant": self.tenant, "error": str(exc)},
            )
            return
        self._owed = None  # polls run one at a time: nothing newer came meanwhile
        self.state.snapshot_owed = False
        self.state.snapshot_error = None

    async def _adopt(self) -> None:
        """Lease mode, before the first poll: store the broker's listing when it is newer
        than the journal's; owe the journal's when it is the newer (or the only) one."""
        assert self._carrier is not None
        snapshot = await self._carrier.latest(self.tenant)
        stored = await self.journal.listing(self.tenant)
        mine = (
            None
            if stored is None
            else fingerprint({k: m.digest for k, m in stored.members.items()})
        )
        if snapshot is not None and (stored is None or snapshot.at_ms / 1000 > stored.updated):
            if mine != snapshot.fingerprint:
                await self.journal.append(
                    self.tenant,
                    [],
                    route=self.route,
                    listing=listing_write(self.tenant, snapshot.members, [], replace=True),
                )
                log.info(
                    "directory listing taken from the broker",
                    extra={"tenant": self.tenant, "members": len(snapshot.members)},
                )
        elif stored is not None and (snapshot is None or mine != snapshot.fingerprint):
            self._owe(dict(stored.members), stored.updated)

    def _owe(self, members: dict[str, StoredMember], at: float) -> None:
        self._owed = (members, at)
        self.state.snapshot_owed = True

    async def _poll(self) -> Outcome:
        if not self._adopted:
            await self._adopt()
            self._adopted = True
        stored = await self.journal.listing(self.tenant)
        if stored is not None:
            self.state.members = len(stored.members)
        if not self._listed and self._turn is not None:
            await self._take_turn()
        departments = await self.client.department_list(ROOT)
        members = await self.client.user_list(ROOT, fetch_child=True)
        self._listed = True
        before = None if stored is None else stored.members
        now = datetime.fromtimestamp(self._clock(), UTC)
        # Pure and CPU-bound (a profile and a digest per member: ~0.2 s for 10 000): off
        # the event loop, so the callbacks it serves are not held up meanwhile.
        listed, diff = await asyncio.to_thread(
            read_listing, self.tenant, departments, members, before, now, self._bootstrap
        )
        verdict = judge(
            self._guard,
            diff,
            members=len(before or ()),
            listed=len(listed),
            held=self._held,
            now=self._clock(),
        )
        if verdict.action == "hold":
            self._keep(verdict.held, (diff, before))
            return "held"
        self.state.members = len(listed)
        if not diff.changed:
            self._released(verdict)
            return "unchanged"
        await self._commit(diff, before, listed=len(listed))
        self._released(verdict)
        return "baseline" if diff.baseline else "changed"

    async def _commit(
        self, diff: ListingDiff, before: Mapping[str, StoredMember] | None, *, listed: int
    ) -> None:
        """Commit ``diff`` (taken against ``before``) with the stored rows it changes."""
        await self.journal.wait_capacity()
        await self.journal.append(
            self.tenant,
            diff.events,
            route=self.route,
            listing=listing_write(self.tenant, diff.upserts, diff.deletes, replace=diff.baseline),
        )
        self._observer.tenant(self.tenant).committed(diff.events)
        if self._carrier is not None:
            after = dict(diff.upserts) if diff.baseline else {**(before or {}), **diff.upserts}
            for key in diff.deletes:
                after.pop(key, None)
            self._owe(after, self._clock())
        self.state.members = listed
        changes = Counter(added=diff.added, updated=diff.updated, deleted=diff.deleted)
        self.state.last_changes = dict(changes)
        log.info(
            "directory baseline stored" if diff.baseline else "directory changes committed",
            extra={"tenant": self.tenant, "members": listed, **changes},
        )

    def _keep(self, held: HeldListing | None, pending: _Pending | None = None) -> None:
        """Keep ``held`` (None: nothing held) and show it; every held poll is logged."""
        self._held = held
        self._pending = None if held is None else pending
        confirm = self._guard.confirm_polls
        self.state.held = None if held is None else HeldStatus.of(held, confirm)
        self._observer.directory_held(self.tenant, 0 if held is None else held.deleted)
        if held is not None:
            log.warning(
                "directory listing held: it would delete too many members; nothing"
                " emitted, the stored listing is kept",
                extra={"tenant": self.tenant, **_counts(held), "confirm_polls": confirm},
            )

    def _released(self, verdict: Verdict, *, by_operator: bool = False) -> None:
        """After a commit (or an unchanged listing): the hold, if any, is over."""
        before = self._held
        if verdict.action == "confirm":
            assert verdict.held is not None
            log.warning(
                "held directory deletions confirmed by an operator and committed"
                if by_operator
                else "held directory deletions confirmed and committed",
                extra={"tenant": self.tenant, **_counts(verdict.held)},
            )
        elif before is not None:
            log.info(
                "held directory listing dropped: the next listing did not delete as many",
                extra={"tenant": self.tenant, **_counts(before)},
            )
        if before is not None:
            self._keep(None)

    async def _take_turn(self) -> None:
        """Pacing: wait for a turn (``state.waiting``) and get the token in it."""
        assert self._turn is not None
        waited = self._monotonic()
        self.state.waiting = True
        try:
            await self._turn()
        finally:
            self.state.waiting = False
            self._turn_seconds = self._monotonic() - waited

    def _failed(self, kind: str, error: str) -> None:
        self.state.failures += 1
        self.state.last_error = error
        self.state.last_error_at = self._clock()
        if self.state.failures == 1:
            self._throttle.reset()  # a new streak of trouble is logged at once
        suppressed = self._throttle.admit(self._monotonic())
        if suppressed is not None:
            log.warning(
                "directory listing failed; the stored listing is kept, retrying",
                extra={
                    "tenant": self.tenant,
                    "fault": kind,
                    "error": error,
                    "failures": self.state.failures,
                    "suppressed": suppressed,
                },
            )


def _counts(held: HeldListing) -> dict[str, int]:
    """A hold's counts for a log line: never an address or a profile."""
    return {
        "deleted": held.deleted,
        "added": held.added,
        "updated": held.updated,
        "members": held.members,
        "listed": held.listed,
        "polls": held.polls,
    }
