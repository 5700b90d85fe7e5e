"""The mass-deletion guard of api2 directory polls (relay.core.listing_guard): which
listings are held, how a hold is confirmed or dropped. Pure, no I/O: the diffs are
real ones (relay.core.listing.diff_listing)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.core import events as ev
from relay.core.listing import (
    ListedMember,
    ListingDiff,
    StoredMember,
    diff_listing,
    profile_digest,
)
from relay.core.listing_guard import DeletionGuard, HeldListing, deletions_of, judge

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
T0 = 1_790_000_000.0


def member(name: str, position: str = "") -> ListedMember:
    alias = f"{name}@x.test"
    return ListedMember(alias, {"alias": alias, "name": name, "position": position})


def company(count: int) -> dict[str, ListedMember]:
    return {m.alias: m for m in (member(f"u{i:03d}") for i in range(count))}


def stored_of(listed: dict[str, ListedMember]) -> dict[str, StoredMember]:
    return {k: StoredMember(m.alias, profile_digest(m.profile)) for k, m in listed.items()}


def diff_of(before: dict[str, ListedMember], after: dict[str, ListedMember]) -> ListingDiff:
    return diff_listing("co", stored_of(before), after, now=NOW)


def without(listed: dict[str, ListedMember], count: int) -> dict[str, ListedMember]:
    """``listed`` with its last ``count`` members gone."""
    keys = sorted(listed)
    return {k: listed[k] for k in keys[: len(keys) - count]}


def verdict_of(
    guard: DeletionGuard,
    before: dict[str, ListedMember],
    after: dict[str, ListedMember],
    held: HeldListing | None = None,
    now: float = T0,
) -> Any:
    diff = diff_of(before, after)
    return judge(guard, diff, members=len(before), listed=len(after), held=held, now=now)


@pytest.mark.parametrize(
    ("deleted", "members", "held"),
    [
        (5, 10, False),  # half the company, but not more than 5: a small company's leavers
        (6, 10, True),
        (10, 100, False),  # not more than 10 %
        (11, 100, True),
        (6, 60, False),
        (7, 60, True),
        (99, 1000, False),
        (101, 1000, True),
        (0, 0, False),
    ],
)
def test_the_default_threshold_is_more_than_5_members_and_more_than_10_percent(
    deleted: int, members: int, held: bool
) -> None:
    assert DeletionGuard().exceeded(deleted, members) is held


def test_each_bound_alone_and_the_guard_off() -> None:
    count_only = DeletionGuard(max_deletions=50, max_share=0.0)
    assert count_only.exceeded(51, 100_000) and not count_only.exceeded(50, 51)
    share_only = DeletionGuard(max_deletions=0, max_share=0.2)
    assert share_only.exceeded(3, 10) and not share_only.exceeded(2, 10)
    off = DeletionGuard(max_share=1.0)
    assert not off.exceeded(10_000, 10_000), "no listing deletes more than everyone"


@pytest.mark.parametrize(
    "options",
    [{"max_deletions": -1}, {"max_share": 1.5}, {"max_share": -0.1}, {"confirm_polls": -1}],
)
def test_a_guard_out_of_range_is_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="not a deletion guard"):
        DeletionGuard(**options)


def test_a_listing_that_lost_most_members_is_held_whole_with_its_counts() -> None:
    before = company(20)
    after = without(before, 15)
    after["new@x.test"] = member("new")
    after["u000@x.test"] = member("u000", position="Lead")
    verdict = verdict_of(DeletionGuard(), before, after)
    assert verdict.action == "hold"
    held = verdict.held
    assert (held.deleted, held.added, held.updated) == (15, 1, 1)
    assert (held.members, held.listed, held.polls, held.since) == (20, 6, 1, T0)


def test_a_baseline_and_a_plausible_listing_are_committed() -> None:
    before = company(20)
    baseline = diff_listing("co", None, without(before, 15), now=NOW)
    verdict = judge(DeletionGuard(), baseline, members=0, listed=5, held=None, now=T0)
    assert verdict.action == "commit" and verdict.held is None
    assert verdict_of(DeletionGuard(), before, without(before, 2)).action == "commit"
    assert verdict_of(DeletionGuard(), before, before).action == "commit"


def test_the_same_deletions_on_three_polls_in_a_row_are_confirmed() -> None:
    guard = DeletionGuard()
    before = company(40)
    after = without(before, 30)
    first = verdict_of(guard, before, after, now=T0)
    # Other changes between the polls do not reset the count: only the deleted set does.
    after["u000@x.test"] = member("u000", position="Lead")
    second = verdict_of(guard, before, after, first.held, now=T0 + 300)
    third = verdict_of(guard, before, after, second.held, now=T0 + 600)
    assert [v.action for v in (first, second, third)] == ["hold", "hold", "confirm"]
    assert [v.held.polls for v in (first, second, third)] == [1, 2, 3]
    assert third.held.since == T0, "since: the first poll that held it"
    assert third.held.updated == 1 and first.held.updated == 0


def test_other_deletions_start_the_count_again() -> None:
    guard = DeletionGuard()
    before = company(40)
    first = verdict_of(guard, before, without(before, 30), now=T0)
    second = verdict_of(guard, before, without(before, 31), first.held, now=T0 + 300)
    assert second.action == "hold" and second.held.polls == 1 and second.held.since == T0 + 300
    assert second.held.deletions != first.held.deletions


def test_a_plausible_listing_drops_the_hold() -> None:
    guard = DeletionGuard()
    before = company(40)
    first = verdict_of(guard, before, without(before, 30))
    healed = verdict_of(guard, before, before, first.held)
    assert healed.action == "commit" and healed.held is None
    again = verdict_of(guard, before, without(before, 30), None)
    assert again.held.polls == 1, "a dropped hold counts from 1 again"


def test_confirm_polls_0_never_confirms_and_1_confirms_at_once() -> None:
    before = company(40)
    after = without(before, 30)
    never, held = DeletionGuard(confirm_polls=0), None
    for _ in range(50):
        verdict = verdict_of(never, before, after, held)
        assert verdict.action == "hold"
        held = verdict.held
    assert held is not None and held.polls == 50
    at_once = verdict_of(DeletionGuard(confirm_polls=1), before, after)
    assert at_once.action == "confirm" and at_once.held.polls == 1


def test_the_deletions_fingerprint_is_the_set_of_keys_only() -> None:
    before = company(10)
    after = without(before, 6)
    renamed = {k: member(m.alias.partition("@")[0], position="X") for k, m in after.items()}
    assert deletions_of(diff_of(before, after)) == deletions_of(diff_of(before, renamed))
    assert deletions_of(diff_of(before, after)) != deletions_of(diff_of(before, without(before, 5)))


@given(
    members=st.integers(min_value=0, max_value=300),
    gone=st.integers(min_value=0, max_value=300),
    added=st.integers(min_value=0, max_value=20),
    max_deletions=st.integers(min_value=0, max_value=400),
    max_share=st.floats(min_value=0.0, max_value=1.0),
    confirm_polls=st.integers(min_value=0, max_value=5),
)
def test_any_listing_is_held_exactly_when_it_deletes_past_both_bounds(
    members: int, gone: int, added: int, max_deletions: int, max_share: float, confirm_polls: int
) -> None:
    gone = min(gone, members)
    guard = DeletionGuard(
        max_deletions=max_deletions, max_share=max_share, confirm_polls=confirm_polls
    )
    before = company(members)
    after = without(before, gone)
    after.update({f"n{i}@x.test": member(f"n{i}") for i in range(added)})
    verdict = verdict_of(guard, before, after)
    too_many = gone > max_deletions and gone > max_share * members
    assert (verdict.action != "commit") is too_many
    if max_share == 1.0:
        assert verdict.action == "commit", "share 1: the guard is off"
    if too_many:
        assert verdict.held.deleted == gone and verdict.held.added == added
        # Judged again and again, the same listing is confirmed on poll confirm_polls.
        held, actions = None, []
        for _ in range(6):
            verdict = verdict_of(guard, before, after, held)
            actions.append(verdict.action)
            if verdict.action == "confirm":
                break
            held = verdict.held
        if confirm_polls:
            assert actions == ["hold"] * (confirm_polls - 1) + ["confirm"]
        else:
            assert set(actions) == {"hold"}


def test_a_confirmed_listing_commits_the_events_it_would_have_had() -> None:
    """The diff is not touched by the guard: its deleted events have the ids of the
    first API's (tenant, account, change), whenever the hold is confirmed."""
    before = company(20)
    diff = diff_of(before, without(before, 15))
    deleted = [e for e in diff.events if e.type == ev.USER_DELETED]
    assert len(deleted) == 15
    for event in deleted:
        alias = event.data["alias"]
        assert event.id == ev.user_change_id(ev.USER_DELETED, "co", alias, None)
