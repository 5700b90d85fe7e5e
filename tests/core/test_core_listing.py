"""The second API's directory diff (relay.core.listing) and the member profiles
(relay.runtime.members): pure, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.core import events as ev
from relay.core.listing import (
    ListedMember,
    StoredMember,
    diff_listing,
    fingerprint,
    implausible,
    profile_digest,
)
from relay.exmail2 import Department, Member
from relay.runtime.members import BadListing, department_paths, listed_members

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
LATER = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)


def profile(alias: str, name: str = "N", position: str = "") -> dict[str, Any]:
    return {"alias": alias, "name": name, "position": position, "parties": []}


def listing(**names: str) -> dict[str, ListedMember]:
    return {
        f"{k}@x.test": ListedMember(f"{k}@x.test", profile(f"{k}@x.test", v))
        for k, v in names.items()
    }


def stored_of(listed: dict[str, ListedMember]) -> dict[str, StoredMember]:
    return {k: StoredMember(m.alias, profile_digest(m.profile)) for k, m in listed.items()}


def apply(stored: dict[str, StoredMember], diff: Any) -> dict[str, StoredMember]:
    after = {} if diff.baseline else dict(stored)
    for key in diff.deletes:
        del after[key]
    after.update(diff.upserts)
    return after


def test_baseline_skip_emits_one_directory_changed_and_stores_everyone() -> None:
    new = listing(ann="Ann", bob="Bob")
    diff = diff_listing("co", None, new, now=NOW)
    assert [e.type for e in diff.events] == [ev.DIRECTORY_CHANGED]
    assert diff.events[0].data == {"old_ver": 0, "new_ver": diff.fingerprint, "count": 2}
    assert diff.baseline and diff.changed and set(diff.upserts) == set(new)


def test_baseline_snapshot_emits_everyone_as_added() -> None:
    diff = diff_listing("co", None, listing(ann="Ann", bob="Bob"), now=NOW, bootstrap="snapshot")
    assert [e.type for e in diff.events] == [ev.DIRECTORY_CHANGED, ev.USER_ADDED, ev.USER_ADDED]
    assert [e.subject for e in diff.events[1:]] == ["ann@x.test", "bob@x.test"]


def test_added_updated_deleted_with_the_first_apis_ids() -> None:
    before = listing(ann="Ann", bob="Bob")
    after = listing(ann="Ann Lee", cat="Cat")
    diff = diff_listing("co", stored_of(before), after, now=NOW)
    head, *users = diff.events
    assert head.type == ev.DIRECTORY_CHANGED and head.data["count"] == 3
    assert head.data["old_ver"] == fingerprint({k: m.digest for k, m in stored_of(before).items()})
    assert [(e.type, e.subject) for e in users] == [
        (ev.USER_UPDATED, "ann@x.test"),
        (ev.USER_DELETED, "bob@x.test"),
        (ev.USER_ADDED, "cat@x.test"),
    ]
    for event in users:
        assert event.id == user_id(event)
    assert users[1].data["profile"] is None
    assert (diff.added, diff.updated, diff.deleted) == (1, 1, 1)
    assert apply(stored_of(before), diff) == stored_of(after)


def user_id(event: ev.Event) -> str:
    return ev.user_change_id(event.type, "co", event.subject, event.data["profile"])


def test_nothing_changed_is_no_event_and_no_row() -> None:
    same = listing(ann="Ann")
    diff = diff_listing("co", stored_of(same), same, now=NOW)
    assert diff.events == [] and not diff.changed


def test_an_empty_listing_after_a_full_one_is_implausible() -> None:
    assert implausible(3, 0) is not None
    assert implausible(None, 0) is None and implausible(0, 0) is None and implausible(3, 1) is None


names = st.dictionaries(
    st.sampled_from(["ann", "bob", "cat", "dan", "eve", "fay"]),
    st.sampled_from(["A", "B", "C"]),
    max_size=6,
)


@given(before=names, after=names)
def test_diff_properties(before: dict[str, str], after: dict[str, str]) -> None:
    """Applying the rows gives the new listing; the same difference found again (another
    time, another replica) has the same ids; a second diff finds nothing."""
    old, new = listing(**before), listing(**after)
    first = diff_listing("co", stored_of(old), new, now=NOW)
    again = diff_listing("co", stored_of(old), new, now=LATER)
    assert [e.id for e in first.events] == [e.id for e in again.events]
    assert apply(stored_of(old), first) == stored_of(new)
    assert not diff_listing("co", apply(stored_of(old), first), new, now=NOW).events
    changed = {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)}
    assert {e.subject for e in first.events[1:]} == changed
    assert len(first.events) == (len(changed) + 1 if changed else 0)


def dept(id: int, name: str, parent: int) -> Department:
    return Department(id=id, name=name, parentid=parent)


BIG = 4913577855806636138


def test_member_profiles_have_the_first_apis_keys_and_paths() -> None:
    departments = [dept(1, "Corp", 0), dept(BIG, "R&D", 1), dept(BIG + 1, "Mail", BIG)]
    assert department_paths(departments) == {1: "", BIG: "R&D", BIG + 1: "R&D/Mail"}
    member = Member.model_validate(
        {"userid": "Ann@x.test", "name": "Ann", "department": [1, BIG + 1, 77],
         "gender": "2", "enable": 0, "extid": "E1", "slaves": ["a@x.test"]}
    )  # fmt: skip
    [(key, listed)] = listed_members(departments, [member, member]).items()
    assert key == "ann@x.test"
    assert listed.profile == {
        "alias": "Ann@x.test", "name": "Ann", "gender": 2, "position": "", "tel": "",
        "mobile": "", "ext_id": "E1", "slaves": ["a@x.test"],
        "parties": ["R&D/Mail", "#77"], "open_type": 2,
    }  # fmt: skip


def test_a_listing_that_cannot_be_believed_is_refused() -> None:
    root = [dept(1, "Corp", 0)]
    with pytest.raises(BadListing, match="root"):
        listed_members([dept(5, "X", 1)], [])
    ann = Member.model_validate({"userid": "ann@x.test", "name": "Ann"})
    other = Member.model_validate({"userid": "ANN@x.test", "name": "Other"})
    with pytest.raises(BadListing, match="twice"):
        listed_members(root, [ann, other])
    with pytest.raises(BadListing, match="loop"):
        department_paths([*root, dept(5, "A", 6), dept(6, "B", 5)])
