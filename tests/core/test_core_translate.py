"""The translation of listen answers and user/list entries into events: pure, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from relay.core import events as ev
from relay.exmail import (
    KeepAlive,
    ListenError,
    Malformed,
    NewMail,
    Unknown,
    UnreadCount,
    UserAction,
    UserListEntry,
    VersionUpdate,
)
from relay.runtime.translate import translate_listen, user_change

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def mail(mail_id: str = "m1", user: str = "bob@example.com") -> NewMail:
    return NewMail(user, mail_id, "alice@example.com", user, "hi", "hello", 3)


def test_mail_and_unread_become_events_in_order() -> None:
    result = translate_listen("acme", 5, [mail(), UnreadCount("bob@example.com", 2)], now=NOW)
    assert [e.type for e in result.events] == [ev.MAIL_NEW, ev.MAIL_UNREAD]
    assert result.events[0].data["mail_id"] == "m1" and result.events[1].data["unread"] == 2
    assert result.update is None and result.skipped == [] and not result.unreadable


def test_the_same_reminder_twice_gets_one_id() -> None:
    first = translate_listen("acme", 5, [mail("m9")], now=NOW).events[0]
    again = translate_listen("acme", 5, [mail("m9")], now=NOW).events[0]
    other_tenant = translate_listen("beta", 5, [mail("m9")], now=NOW).events[0]
    assert first.id == again.id != other_tenant.id


def test_an_unread_count_is_told_apart_by_the_mail_before_it() -> None:
    """3, read one: 2; a new mail: 3; read one: 2 again. The two 2s are two facts (the
    second came after another mail); the answer redelivered gives the same ids."""
    bob = "bob@example.com"
    answers = [
        [mail("m1"), UnreadCount(bob, 2)],
        [mail("m2")],
        [UnreadCount("Bob@Example.com", 2)],
    ]
    seen: dict[str, str] = {}
    ids = [
        e.id
        for a in answers
        for e in translate_listen("acme", 5, a, now=NOW, last_mail=seen).events
    ]
    assert len(set(ids)) == 4
    # A new owner gets the first answer again (it was never acknowledged): same ids.
    fresh: dict[str, str] = {}
    again = [e.id for e in translate_listen("acme", 5, answers[0], now=NOW, last_mail=fresh).events]
    assert again == ids[:2]


@given(st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=8))
def test_the_newest_version_update_that_moves_the_ver_wins(vers: list[int]) -> None:
    current = 25
    result = translate_listen("acme", current, [VersionUpdate(v) for v in vers], now=NOW)
    moving = [v for v in vers if v != current]
    if moving:
        assert result.update is not None and result.update.ver == max(moving)
    else:
        assert result.update is None
    assert result.events == []


def test_errors_unknowns_and_malformed_are_skipped_with_their_kind() -> None:
    result = translate_listen(
        "acme",
        1,
        [ListenError("1002", "busy"), Unknown({"Odd": 1}), Malformed("bad json", "{x"), mail()],
        now=NOW,
    )
    assert [s.kind for s in result.skipped] == ["error", "unknown", "malformed"]
    assert "1002" in result.skipped[0].detail and "Odd" in result.skipped[1].detail
    assert len(result.events) == 1 and not result.unreadable


def test_only_an_answer_of_nothing_but_malformed_messages_is_unreadable() -> None:
    assert translate_listen("acme", 1, [Malformed("x", "y")] * 2, now=NOW).unreadable
    assert not translate_listen("acme", 1, [KeepAlive(0), Malformed("x", "y")], now=NOW).unreadable
    assert not translate_listen("acme", 1, [], now=NOW).unreadable


def entry(action: UserAction) -> UserListEntry:
    # model_construct: the entry as the client hands it over, action already mapped.
    return UserListEntry.model_construct(alias="bob@example.com", code=1, action=action)


def test_existence_decides_a_deletion_whatever_the_listed_action() -> None:
    for action in UserAction:
        assert user_change(entry(action), exists=False, snapshot=False) == "deleted"
        assert user_change(entry(action), exists=False, snapshot=True) == "deleted"


def test_an_existing_account_is_added_or_updated() -> None:
    assert user_change(entry(UserAction.ADDED), exists=True, snapshot=False) == "added"
    assert user_change(entry(UserAction.UPDATED), exists=True, snapshot=False) == "updated"
    assert user_change(entry(UserAction.DELETED), exists=True, snapshot=False) == "updated"
    assert user_change(entry(UserAction.UPDATED), exists=True, snapshot=True) == "added"
