"""What ``/status.json`` shows of an api2 tenant's directory polls, and the mutable
state the polls fill in.

Where it sits: :class:`relay.runtime.directory2.DirectoryPoller` writes a
:class:`PollState` (one per tenant, owned by :class:`relay.runtime.polling.DirectoryPollers`,
outliving its pollers); :class:`relay.runtime.callback_status.CallbackTally` shows its
:meth:`PollState.to_status` as the tenant's ``directory`` (docs/operations.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from relay.core.listing_guard import HeldListing
from relay.runtime.status import _JsonRecord

__all__ = ["DirectoryPollStatus", "HeldStatus", "PollState"]


@dataclass(frozen=True, slots=True)
class HeldStatus(_JsonRecord):
    """``tenants[].directory.held``: the listing held for too many deletions (counts only)."""

    deleted: int  # members it would delete
    added: int
    updated: int
    members: int  # in the stored listing
    listed: int  # in the held listing
    polls: int  # polls in a row that would delete the same members
    confirm_polls: int  # committed when ``polls`` reaches it (0: never by polls)
    since: float  # the first of those polls

    @classmethod
    def of(cls, held: HeldListing, confirm_polls: int) -> HeldStatus:
        return cls(
            deleted=held.deleted,
            added=held.added,
            updated=held.updated,
            members=held.members,
            listed=held.listed,
            polls=held.polls,
            confirm_polls=confirm_polls,
            since=held.since,
        )


@dataclass(frozen=True, slots=True)
class DirectoryPollStatus(_JsonRecord):
    """``tenants[].directory`` of an api2 tenant on ``/status.json``."""

    polling: bool  # this replica polls the tenant now (lease mode: it owns the shard)
    interval: float
    members: int | None  # in the stored listing (None: none stored yet)
    last_poll_at: float | None
    last_ok_at: float | None
    last_seconds: float | None
    last_outcome: str | None
    last_changes: Mapping[str, int]  # of the last poll that found any
    last_error: str | None
    last_error_at: float | None
    failures: int  # polls failed in a row
    # Lease mode: the listing's copy on the broker (None in static mode).
    snapshot_owed: bool | None  # committed here, not yet confirmed by the broker
    snapshot_error: str | None  # why the last publish failed (None: it did not)
    waiting: bool  # the first listing waits for its pacing turn ([sharding] takeover_rate)
    held: HeldStatus | None  # a listing held for too many deletions (None: none)


@dataclass
class PollState:
    """One tenant's polls so far (mutable, loop-owned; outlives its pollers)."""

    tenant: str
    interval: float
    polling: bool = False
    members: int | None = None
    last_poll_at: float | None = None
    last_ok_at: float | None = None
    last_seconds: float | None = None
    last_outcome: str | None = None
    last_changes: dict[str, int] = field(default_factory=dict)
    last_error: str | None = None
    last_error_at: float | None = None
    failures: int = 0
    snapshot_owed: bool | None = None
    snapshot_error: str | None = None
    waiting: bool = False
    held: HeldStatus | None = None

    def to_status(self) -> DirectoryPollStatus:
        return DirectoryPollStatus(
            polling=self.polling,
            interval=self.interval,
            members=self.members,
            last_poll_at=self.last_poll_at,
            last_ok_at=self.last_ok_at,
            last_seconds=self.last_seconds,
            last_outcome=self.last_outcome,
            last_changes=dict(self.last_changes),
            last_error=self.last_error,
            last_error_at=self.last_error_at,
            failures=self.failures,
            snapshot_owed=self.snapshot_owed,
            snapshot_error=self.snapshot_error,
            waiting=self.waiting,
            held=self.held,
        )
