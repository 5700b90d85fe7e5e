"""Directory events without a change feed: a whole listing diffed against the last one.
Pure code, no I/O.

Where it sits: the second Exmail API has no directory Ver and no diff (notes §10), so
:class:`relay.runtime.directory2.DirectoryPoller` lists every member on an interval and
hands the listing here with the one the journal kept (:mod:`relay.journal`,
``directory_listings``). :func:`diff_listing` says which ``exmail.user.*`` events the
difference makes and which rows of the stored listing change with them; the poller
commits both in one transaction.

The stored listing holds, per member (key: the address in lower case), the address as
listed and a digest of the profile (:func:`profile_digest`), never the profile itself:
a 10 000-member company keeps about 0.7 MB, and a difference still names the account,
the change and (from the new listing) the profile it left.

Ids are those of the first API's user events (:func:`relay.core.events.user_change_id`:
tenant, account, change, profile), so the same difference found twice (a crash between
the commit and the next poll's read, two replicas during a handoff) has the same ids.
The ``exmail.directory.changed`` that leads a poll's events names the listings by their
fingerprints (:func:`fingerprint`: content, not time), so it is stable too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

from relay.core import events as ev
from relay.core.events import Event

__all__ = [
    "ListedMember",
    "ListingDiff",
    "StoredMember",
    "diff_listing",
    "fingerprint",
    "implausible",
    "profile_digest",
]

# Fingerprints are JSON-safe integers (at most 2**53 - 1): ``data.old_ver``/``new_ver``.
_FINGERPRINT_BITS: Final = 53


@dataclass(frozen=True, slots=True)
class ListedMember:
    """One member of a fresh listing: the address as listed and its event profile."""

    alias: str
    profile: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class StoredMember:
    """One member of the stored listing: the address as listed and its profile digest."""

    alias: str
    digest: str


@dataclass(frozen=True, slots=True)
class ListingDiff:
    """What one listing changes: the events, in order, and the stored rows to write."""

    events: list[Event]
    upserts: dict[str, StoredMember] = field(default_factory=dict)  # key -> new row
    deletes: list[str] = field(default_factory=list)  # keys gone
    fingerprint: int = 0  # of the new listing
    baseline: bool = False  # no listing was stored: this one is the first
    added: int = 0
    updated: int = 0
    deleted: int = 0

    @property
    def changed(self) -> bool:
        """Something to commit: events, or (a baseline) the listing itself."""
        return self.baseline or bool(self.upserts or self.deletes)


def profile_digest(profile: Mapping[str, Any]) -> str:
    """A stable digest of a profile (canonical JSON, as the user events' ids use)."""
    text = json.dumps(profile, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:32]


def fingerprint(members: Mapping[str, str]) -> int:
    """A listing's fingerprint from ``key -> digest``: equal listings, equal numbers
    (1 to 2**53 - 1; not ordered in time, so never compare two as newer or older)."""
    h = hashlib.sha256()
    for key in sorted(members):
        h.update(key.encode("utf-8", "surrogatepass") + b"\x1f" + members[key].encode() + b"\x1e")
    value = int.from_bytes(h.digest()[:8], "big") >> (64 - _FINGERPRINT_BITS)
    return value or 1


def implausible(stored: int | None, listed: int) -> str | None:
    """Why a listing must not be believed, or None. A company always has a member (its
    administrator): an empty listing after a non-empty one is a broken answer, and
    believing it would report everyone deleted."""
    if listed == 0 and stored:
        return f"the listing is empty, the stored one has {stored} members"
    return None


def diff_listing(
    tenant: str,
    stored: Mapping[str, StoredMember] | None,
    listed: Mapping[str, ListedMember],
    *,
    now: datetime,
    bootstrap: Literal["skip", "snapshot"] = "skip",
) -> ListingDiff:
    """The events and row changes that take ``stored`` (None: nothing stored yet) to
    ``listed`` (both keyed by the address in lower case).

    A baseline (``stored`` is None) emits one ``exmail.directory.changed`` from 0 and, in
    ``snapshot`` mode, every member as ``exmail.user.added``. Otherwise each member
    added, changed or gone is one event, in key order, led by one
    ``exmail.directory.changed`` from the stored listing's fingerprint to the new one's;
    nothing changed: no event and no row.
    """
    digests = {key: profile_digest(member.profile) for key, member in listed.items()}
    new_fp = fingerprint(digests)
    if stored is None:
        events = [
            ev.directory_changed(
                tenant=tenant, old_ver=0, new_ver=new_fp, count=len(listed), now=now
            )
        ]
        if bootstrap == "snapshot":
            events += [
                _user(tenant, listed[key].alias, "added", new_fp, listed[key].profile, now)
                for key in sorted(listed)
            ]
        every = {key: StoredMember(listed[key].alias, digests[key]) for key in listed}
        return ListingDiff(events, every, [], new_fp, baseline=True, added=len(events) - 1)
    changes: list[tuple[str, Literal["added", "updated", "deleted"]]] = []
    for key in sorted(listed.keys() | stored.keys()):
        before, after = stored.get(key), digests.get(key)
        if before is None:
            changes.append((key, "added"))
        elif after is None:
            changes.append((key, "deleted"))
        elif before.digest != after or before.alias != listed[key].alias:
            changes.append((key, "updated"))
    if not changes:
        return ListingDiff([], fingerprint=new_fp)
    old_fp = fingerprint({key: member.digest for key, member in stored.items()})
    events = [
        ev.directory_changed(
            tenant=tenant, old_ver=old_fp, new_ver=new_fp, count=len(changes), now=now
        )
    ]
    upserts: dict[str, StoredMember] = {}
    deletes: list[str] = []
    counts = {"added": 0, "updated": 0, "deleted": 0}
    for key, change in changes:
        counts[change] += 1
        if change == "deleted":
            deletes.append(key)
            events.append(_user(tenant, stored[key].alias, change, new_fp, None, now))
        else:
            upserts[key] = StoredMember(listed[key].alias, digests[key])
            events.append(
                _user(tenant, listed[key].alias, change, new_fp, listed[key].profile, now)
            )
    return ListingDiff(
        events,
        upserts,
        deletes,
        new_fp,
        added=counts["added"],
        updated=counts["updated"],
        deleted=counts["deleted"],
    )


def _user(
    tenant: str,
    alias: str,
    change: Literal["added", "updated", "deleted"],
    ver: int,
    profile: Mapping[str, Any] | None,
    now: datetime,
) -> Event:
    return ev.user_changed(
        tenant=tenant,
        alias=alias,
        change=change,
        ver=ver,
        profile=None if profile is None else dict(profile),
        now=now,
    )
