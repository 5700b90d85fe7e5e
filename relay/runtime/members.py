"""The second API's directory listing, turned into the profiles user events carry, and
diffed against the stored one (:func:`read_listing`). Pure.

Where it sits: between :class:`relay.exmail2.Exmail2Client`'s ``department/list`` and
``user/list`` answers and :func:`relay.core.listing.diff_listing`. The profile has the
keys and meanings of the first API's (docs/events.md, "The user profile"), so a consumer
reads ``exmail.user.*`` the same way whichever API the tenant is on:

| profile key | second API |
|---|---|
| ``alias`` | ``userid`` |
| ``name``, ``position``, ``tel``, ``mobile``, ``slaves`` | the same keys |
| ``gender`` | ``gender`` as an int (0, 1, 2) |
| ``ext_id`` | ``extid`` |
| ``parties`` | the paths (``a/b``, root excluded) of the member's departments, in the
  listed order; the root (id 1: the company itself) is no party; a department missing
  from ``department/list`` is named ``#<id>`` |
| ``open_type`` | ``enable``: 1 enabled, anything else 2 disabled |

Lives in the runtime layer, as :mod:`relay.runtime.translate` does, because it speaks the
client's types.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final, Literal

from relay.core.listing import ListedMember, ListingDiff, StoredMember, diff_listing, implausible
from relay.exmail2 import Department, Member

__all__ = [
    "ROOT",
    "BadListing",
    "Implausible",
    "department_paths",
    "listed_members",
    "profile_of_member",
    "read_listing",
]

ROOT: Final = 1
_MAX_DEPTH: Final = 64  # a loop in parentid (a broken answer) ends here


class BadListing(ValueError):
    """The listing cannot be believed (a duplicate member, a missing root)."""


class Implausible(ValueError):
    """The listing is refused (:func:`relay.core.listing.implausible` says why)."""


def department_paths(departments: Sequence[Department]) -> dict[int, str]:
    """Department id -> ``a/b`` path below the root (the root itself: ``""``)."""
    by_id = {d.id: d for d in departments}
    if ROOT not in by_id:
        raise BadListing("department/list has no root department (id 1)")
    paths: dict[int, str] = {}
    for dept in departments:
        names: list[str] = []
        node: Department | None = dept
        for _ in range(_MAX_DEPTH):
            if node is None or node.id == ROOT:
                break
            names.append(node.name)
            node = by_id.get(node.parentid)
        else:
            raise BadListing(f"department {dept.id}: its parents form a loop")
        paths[dept.id] = "/".join(reversed(names))
    return paths


def profile_of_member(member: Member, paths: dict[int, str]) -> dict[str, Any]:
    """The JSON-ready profile of one listed member (the table above)."""
    return {
        "alias": member.userid,
        "name": member.name,
        "gender": int(member.gender),
        "position": member.position,
        "tel": member.tel,
        "mobile": member.mobile,
        "ext_id": member.extid,
        "slaves": list(member.slaves),
        "parties": [paths.get(d, f"#{d}") for d in member.department if d != ROOT],
        "open_type": 1 if member.enable == 1 else 2,
    }


def listed_members(
    departments: Sequence[Department], members: Sequence[Member]
) -> dict[str, ListedMember]:
    """The listing, keyed by the address in lower case. A member listed twice alike (in
    two departments, if the server repeats them) counts once; twice with different
    fields, or without an address, makes the whole listing :class:`BadListing`: a diff
    of a listing that cannot be read right would invent changes."""
    paths = department_paths(departments)
    listed: dict[str, ListedMember] = {}
    for member in members:
        key = member.userid.strip().lower()
        if not key:
            raise BadListing("user/list has a member without a userid")
        entry = ListedMember(member.userid, profile_of_member(member, paths))
        if key in listed and listed[key] != entry:
            raise BadListing(f"user/list lists {member.userid!r} twice, differently")
        listed[key] = entry
    return listed


def read_listing(
    tenant: str,
    departments: Sequence[Department],
    members: Sequence[Member],
    before: Mapping[str, StoredMember] | None,
    now: datetime,
    bootstrap: Literal["skip", "snapshot"],
) -> tuple[dict[str, ListedMember], ListingDiff]:
    """The listing read and diffed against ``before`` (the directory poller runs it on a
    worker thread: it touches nothing shared)."""
    listed = listed_members(departments, members)
    if (why := implausible(None if before is None else len(before), len(listed))) is not None:
        raise Implausible(why)
    return listed, diff_listing(tenant, before, listed, now=now, bootstrap=bootstrap)
