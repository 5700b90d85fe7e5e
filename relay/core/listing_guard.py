"""The mass-deletion guard of api2 directory polls: a listing that would delete too many
members at once is held, not emitted. Pure code, no I/O.

Where it sits: :class:`relay.runtime.directory2.DirectoryPoller` diffs each listing
against the stored one (:func:`relay.core.listing.diff_listing`) and asks :func:`judge`
before it commits the difference. Why the guard exists: the second API has no change
feed, so a member missing from a listing is reported deleted, and an OA system that
consumes ``exmail.user.deleted`` deprovisions the person. An empty listing is refused
outright (:func:`relay.core.listing.implausible`), but a truncated, non-empty one (one
department's members instead of the company's, a missing page) looks like a real
listing. Directory sync tools guard against the same thing (Azure AD Connect's
"prevent accidental deletes", Okta's import safeguard): past a threshold, nothing is
applied until the deletion is confirmed.

The rules, with :class:`DeletionGuard`'s defaults:

- A poll's difference is **too many deletions** when it deletes more than
  ``max_deletions`` (5) members *and* more than ``max_share`` (10 %) of the stored
  ones: a small company's few leavers and a large one's daily churn pass, a listing
  that lost a department does not. ``max_share = 1`` turns the guard off (no listing
  deletes more than every member).
- Such a listing is **held whole**: none of its events is emitted (not its additions
  and updates either) and the stored listing is kept. Applying only its additions and
  updates would store a listing that is neither the old nor the new one, under a
  fingerprint (``data.ver``) no listing had, and an answer that lost members cannot be
  trusted for the others' fields either. The cost is a delay: the other changes come
  with the confirmed listing, or with the next plausible one.
- A held deletion is **confirmed** when ``confirm_polls`` (3) polls in a row would
  delete the same members (the set of keys, :func:`deletions_of`; the poll that held it
  first counts). That poll's difference is committed as any other, with the ids it
  would have had at once (a deleted member's id does not depend on the listing). Other
  changes between the polls (an update, a new hire) do not reset the count; a member
  more or less among the deleted does. A broken answer is rarely broken the same way
  three times; a real mass deletion (a division offboarded, a domain renamed) waits
  two more intervals. An operator may confirm a hold at once (the admin API's
  ``confirm-held``: the poller commits the held difference, as the confirming poll
  would). ``confirm_polls = 0``: never confirmed by polls, only by an operator.

Failed polls (no listing) neither count nor reset; a plausible listing drops the hold.
The count lives in the poller's memory: a restart or a takeover starts it again, which
only holds longer.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from relay.core.listing import ListingDiff, fingerprint

__all__ = ["DeletionGuard", "HeldListing", "Verdict", "deletions_of", "judge"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DeletionGuard:
    """When a listing is held (:func:`judge`); the defaults are the settings'."""

    max_deletions: int = 5
    max_share: float = 0.1
    confirm_polls: int = 3  # 0: never confirmed by polls

    def __post_init__(self) -> None:
        if self.max_deletions < 0 or not 0.0 <= self.max_share <= 1.0 or self.confirm_polls < 0:
            raise ValueError(f"not a deletion guard: {self!r}")

    def exceeded(self, deleted: int, members: int) -> bool:
        """Whether deleting ``deleted`` of ``members`` stored members is too many."""
        return deleted > self.max_deletions and deleted > self.max_share * members


@dataclass(frozen=True, slots=True, kw_only=True)
class HeldListing:
    """A listing held back: what it would change, and how often it was found."""

    deletions: int  # the fingerprint of the set of keys it deletes (deletions_of)
    deleted: int
    added: int
    updated: int
    members: int  # in the stored listing
    listed: int  # in the held listing
    polls: int  # polls in a row that would delete the same members
    since: float  # when the first of them ran (Unix seconds)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with one poll's difference.

    ``commit``: commit it (``held`` is None). ``hold``: commit nothing; ``held`` is the
    hold to keep. ``confirm``: commit it; ``held`` is the hold it confirms (for the log).
    """

    action: Literal["commit", "hold", "confirm"]
    held: HeldListing | None = None


def deletions_of(diff: ListingDiff) -> int:
    """The fingerprint of the set of members ``diff`` deletes (their keys only)."""
    return fingerprint(dict.fromkeys(diff.deletes, ""))


def judge(
    guard: DeletionGuard,
    diff: ListingDiff,
    *,
    members: int,
    listed: int,
    held: HeldListing | None,
    now: float,
) -> Verdict:
    """The verdict on ``diff``, which takes a stored listing of ``members`` members to
    one of ``listed``; ``held`` is the hold kept since the last poll (None: none)."""
    if diff.baseline or not guard.exceeded(diff.deleted, members):
        return Verdict("commit")
    deletions = deletions_of(diff)
    again = held is not None and held.deletions == deletions
    found = HeldListing(
        deletions=deletions,
        deleted=diff.deleted,
        added=diff.added,
        updated=diff.updated,
        members=members,
        listed=listed,
        polls=1,
        since=now,
    )
    if again:
        assert held is not None
        found = replace(found, polls=held.polls + 1, since=held.since)
    if guard.confirm_polls and found.polls >= guard.confirm_polls:
        return Verdict("confirm", found)
    return Verdict("hold", found)
