"""Events, ids and routing: pure functions, no I/O."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.core import events as ev
from relay.core import routing
from relay.core.routing import Route, Router

NOW = datetime(2026, 11, 28, 8, 0, 0, 123456, tzinfo=UTC)


def _mail(**overrides: object) -> ev.Event:
    args: dict[str, object] = {
        "tenant": "acme",
        "user": "bob@gzdev.com",
        "mail_id": "ZC1234",
        "sender": "alice@x.com",
        "receiver": "bob@gzdev.com",
        "subject": "测试",
        "summary": "hello",
        "unread": 3,
        "now": NOW,
    }
    args.update(overrides)
    return ev.mail_new(**args)  # type: ignore[arg-type]


def test_mail_new_is_a_structured_cloudevent() -> None:
    event = _mail()
    doc = json.loads(event.encode())
    assert doc == {
        "specversion": "1.0",
        "id": event.id,
        "source": "exmail-relay/acme",
        "type": "exmail.mail.new",
        "subject": "bob@gzdev.com",
        "time": "2026-11-28T08:00:00.123Z",
        "datacontenttype": "application/json",
        "data": {
            "user": "bob@gzdev.com",
            "mail_id": "ZC1234",
            "sender": "alice@x.com",
            "receiver": "bob@gzdev.com",
            "subject": "测试",
            "summary": "hello",
            "unread": 3,
        },
    }
    assert "测试".encode() in event.encode(), "non-ASCII is kept as UTF-8, not escaped"
    assert event.routing_key == "acme.mail.new"


def test_same_reminder_twice_gets_one_id_and_different_mail_another() -> None:
    first = _mail()
    again = _mail(now=NOW + timedelta(seconds=30), unread=4)
    other = _mail(mail_id="ZC9999")
    other_tenant = _mail(tenant="globex")
    assert first.id == again.id
    assert len({first.id, other.id, other_tenant.id}) == 3
    assert len(first.id) == 32 and int(first.id, 16) >= 0


def test_account_case_does_not_change_the_mail_id() -> None:
    assert _mail(user="Bob@GZDEV.com").id == _mail().id


def test_an_unread_count_reported_again_keeps_its_id() -> None:
    a = ev.mail_unread(tenant="acme", user="bob@gzdev.com", unread=2, after_mail="M1", now=NOW)
    b = ev.mail_unread(
        tenant="acme", user="Bob@gzdev.com", unread=2, after_mail="M1", now=NOW + timedelta(1)
    )
    assert a.id == b.id
    # The same count after another mail is another fact.
    later = ev.mail_unread(tenant="acme", user="bob@gzdev.com", unread=2, after_mail="M2", now=NOW)
    assert later.id != a.id
    assert a.routing_key == "acme.mail.unread"
    assert a.data == {"user": "bob@gzdev.com", "unread": 2}


texts = st.text(alphabet=st.characters(exclude_characters="\x1f"), max_size=12)
# Accounts are compared case-insensitively; ASCII, whose case round-trips.
accounts = st.text(alphabet="abcXYZ09@.-", max_size=12).map(str.lower)
unread_facts = st.tuples(texts, accounts, st.integers(0, 2**31), st.none() | texts.filter(bool))


@given(unread_facts, unread_facts)
def test_unread_ids_are_equal_exactly_for_the_same_fact(
    a: tuple[str, str, int, str | None], b: tuple[str, str, int, str | None]
) -> None:
    assert (ev.unread_id(*a) == ev.unread_id(*b)) == (a == b)
    assert ev.unread_id(a[0], a[1].upper(), a[2], a[3]) == ev.unread_id(*a)


profiles = st.none() | st.dictionaries(
    st.sampled_from(["name", "position", "tel", "slaves", "open_type"]),
    st.none() | st.integers(-3, 3) | texts | st.lists(texts, max_size=3),
    max_size=5,
)


@given(
    st.sampled_from(list(ev.ALL_TYPES[3:])),
    texts,
    accounts,
    profiles,
    profiles,
    st.integers(0, 2**40),
    st.integers(0, 2**40),
)
def test_user_change_ids_follow_the_fact_not_the_listing(
    kind: str,
    tenant: str,
    alias: str,
    profile: dict[str, object] | None,
    other: dict[str, object] | None,
    ver: int,
    later_ver: int,
) -> None:
    change = kind.rsplit(".", 1)[1]
    first = ev.user_changed(
        tenant=tenant,
        alias=alias,
        change=change,
        ver=ver,
        profile=profile,
        now=NOW,  # type: ignore[arg-type]
    )
    # Listed again from an older Ver (a takeover): another list Ver, the same fact.
    again = ev.user_changed(
        tenant=tenant,
        alias=alias.upper(),
        change=change,  # type: ignore[arg-type]
        ver=later_ver,
        profile=None if profile is None else dict(reversed(list(profile.items()))),
        now=NOW + timedelta(hours=1),
    )
    assert first.id == again.id
    changed = ev.user_changed(
        tenant=tenant,
        alias=alias,
        change=change,
        ver=ver,
        profile=other,
        now=NOW,  # type: ignore[arg-type]
    )
    assert (changed.id == first.id) == (other == profile)


def test_directory_and_user_events() -> None:
    changed = ev.directory_changed(tenant="acme", old_ver=5, new_ver=9, count=2, now=NOW)
    assert changed.subject == "acme"
    assert changed.routing_key == "acme.directory.changed"
    assert (
        changed.id
        == ev.directory_changed(
            tenant="acme", old_ver=5, new_ver=9, count=2, now=NOW + timedelta(hours=1)
        ).id
    )
    added = ev.user_changed(
        tenant="acme", alias="a@x.com", change="added", ver=9, profile={"name": "A"}, now=NOW
    )
    deleted = ev.user_changed(
        tenant="acme", alias="a@x.com", change="deleted", ver=9, profile=None, now=NOW
    )
    assert added.type == "exmail.user.added" and deleted.type == "exmail.user.deleted"
    assert added.id != deleted.id
    assert deleted.data["profile"] is None
    assert added.routing_key == "acme.user.added"


def test_time_is_utc_with_z_whatever_the_input_zone() -> None:
    shanghai = timezone(timedelta(hours=8))
    event = _mail(now=datetime(2026, 11, 28, 16, 0, 0, tzinfo=shanghai))
    assert event.to_cloudevent()["time"] == "2026-11-28T08:00:00.000Z"


parts = st.lists(st.text(alphabet=st.characters(exclude_characters="\x1f")), min_size=1, max_size=4)


@given(parts, parts)
def test_derived_ids_differ_whenever_the_parts_differ(a: list[str], b: list[str]) -> None:
    if a != b:
        assert ev.derive_id(*a) != ev.derive_id(*b)
    else:
        assert ev.derive_id(*a) == ev.derive_id(*b)


def test_lone_surrogates_from_upstream_json_still_encode() -> None:
    event = _mail(subject="bad \ud800 text", user="x\udfff@y.com")
    body = event.encode()
    body.decode("utf-8")  # valid UTF-8
    assert json.loads(body)["data"]["subject"] == "bad \ud800 text"
    assert len(event.id) == 32


def test_type_patterns() -> None:
    assert ev.type_matches("exmail.mail.new", "*")
    assert ev.type_matches("exmail.mail.new", "exmail.mail.*")
    assert not ev.type_matches("exmail.user.added", "exmail.mail.*")
    assert ev.type_matches("exmail.user.added", "exmail.user.added")
    assert not ev.type_matches("exmail.user.added", "exmail.user.add")


def test_router_applies_type_and_tenant_filters() -> None:
    router = Router(
        (
            Route("amqp"),
            Route("webhook:mail", types=("exmail.mail.*",)),
            Route("webhook:acme-users", types=("exmail.user.*",), tenants=frozenset({"acme"})),
        )
    )
    user = ev.user_changed(
        tenant="acme", alias="a@x.com", change="added", ver=1, profile={}, now=NOW
    )
    other = ev.user_changed(
        tenant="globex", alias="a@x.com", change="added", ver=1, profile={}, now=NOW
    )
    assert list(router(_mail())) == ["amqp", "webhook:mail"]
    assert list(router(user)) == ["amqp", "webhook:acme-users"]
    assert list(router(other)) == ["amqp"]
    assert router.sinks == ["amqp", "webhook:mail", "webhook:acme-users"]


def test_router_remembers_each_tenant_and_type_and_answers_as_the_routes_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    router = Router(
        (
            Route("amqp", types=("exmail.mail.*",)),
            Route("webhook:acme", tenants=frozenset({"acme"})),
        )
    )
    events = [
        ev.user_changed(tenant=t, alias="a@x.com", change="added", ver=1, profile={}, now=NOW)
        for t in ("acme", "globex")
    ] + [_mail(), _mail()]
    for _ in range(2):  # the second round is answered from memory
        for event in events:
            assert tuple(router(event)) == router.route(event)
    assert tuple(router(events[0])) == ("webhook:acme",)
    assert tuple(router(events[1])) == ()
    # Bounded: past ROUTER_MEMORY pairs it starts over, and still answers right.
    monkeypatch.setattr(routing, "ROUTER_MEMORY", 2)
    for tenant in ("t1", "t2", "t3", "acme"):
        event = ev.user_changed(
            tenant=tenant, alias="a@x.com", change="added", ver=1, profile={}, now=NOW
        )
        assert tuple(router(event)) == router.route(event)
        assert len(router._known) <= 2


def test_format_time_is_the_utc_text_of_the_instant_whatever_asked_before() -> None:
    # format_time keeps its last answers: equal instants in other zones, and moments
    # asked one after another, still get their own UTC text.
    moment = datetime(2026, 12, 7, 1, 2, 3, 456789, tzinfo=UTC)
    assert ev.format_time(moment) == "2026-12-07T01:02:03.456Z"
    east = moment.astimezone(timezone(timedelta(hours=8)))
    assert ev.format_time(east) == "2026-12-07T01:02:03.456Z"
    later = moment + timedelta(milliseconds=1)
    assert ev.format_time(later) == "2026-12-07T01:02:03.457Z"
    assert ev.format_time(moment) == "2026-12-07T01:02:03.456Z"
