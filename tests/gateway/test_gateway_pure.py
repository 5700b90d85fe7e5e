"""The gateway's pure pieces: the token bucket, the unread cache, the openapi parameter
mapping and the error mapping, without a server."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from relay.core.events import mail_new, mail_unread
from relay.exmail import (
    ApiError,
    ExmailTimeout,
    HTTPStatusError,
    InvalidRequest,
    NetworkError,
    NotFound,
    TemporarilyUnavailable,
)
from relay.gateway.clients import ApiClient, ClientRegistry
from relay.gateway.limits import TokenBucket, retry_after
from relay.gateway.operations import OPERATIONS, json_values, params_for
from relay.gateway.problems import from_exmail_error
from relay.gateway.unread import UnreadCache


def test_the_bucket_allows_burst_then_rate() -> None:
    bucket = TokenBucket(2.0, 3, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)
    assert bucket.take(0.5) == 0.0  # one token refilled
    assert bucket.take(100.0) == 0.0  # never more than burst after idling
    assert [bucket.take(100.0) for _ in range(3)][-1] > 0
    assert bucket.take(50.0) > 0  # a clock stepped back adds nothing
    assert retry_after(0.01) == "1" and retry_after(2.2) == "3"


@given(st.lists(st.floats(min_value=0, max_value=10), max_size=60))
def test_the_bucket_never_grants_more_than_burst_plus_rate_times_time(steps: list[float]) -> None:
    bucket = TokenBucket(1.5, 4, now=0.0)
    now, granted = 0.0, 0
    for step in steps:
        now += step
        granted += bucket.take(now) == 0.0
    assert granted <= 4 + 1.5 * now + 1e-9


def test_the_unread_cache_keeps_the_newest_count_per_user() -> None:
    cache = UnreadCache(max_entries=2)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    cache.feed(
        "acme",
        [
            mail_new(tenant="acme", user="Lina@Example.com", mail_id="m", sender="a@b.c",
                     receiver="lina@example.com", subject="s", summary="", unread=3, now=at),
            mail_new(tenant="acme", user="bo@example.com", mail_id="m", sender="a@b.c",
                     receiver="bo@example.com", subject="s", summary="", unread=None, now=at),
            mail_unread(tenant="acme", user="ann@example.com", unread=0, now=at),
        ],
    )  # fmt: skip
    held = cache.get("acme", "lina@example.com")
    assert held is not None and (held.count, held.source) == (3, "listen")
    assert cache.get("acme", "bo@example.com") is None  # a push without a count
    assert cache.get("acme", "ann@example.com") is not None
    assert cache.get("other", "lina@example.com") is None
    cache.record("acme", "lina@example.com", 9, at=at.timestamp() - 1, source="upstream")
    assert cache.get("acme", "lina@example.com") == held  # older than what is held
    cache.record("acme", "new@example.com", 1, at=at.timestamp() + 1, source="upstream")
    assert len(cache) == 2  # bounded: the least recently updated went


def test_openapi_parameters_take_both_spellings_and_the_clients_checks() -> None:
    sync = OPERATIONS["user/sync"]
    form = params_for(sync, {"Action": "2", "Alias": "a@x.com", "Slave": ["b@x.com", "c@x.com"]})
    assert form == [
        ("Action", "2"),
        ("Alias", "a@x.com"),
        ("Slave", "b@x.com"),
        ("Slave", "c@x.com"),
    ]
    assert (
        params_for(sync, {"action": "2", "alias": "a@x.com", "slaves": ["b@x.com", "c@x.com"]})
        == form
    )
    assert params_for(OPERATIONS["party/list"], {}) == [("PartyPath", "")]
    members = {"group_alias": "g@x.com", "members": "m@x.com"}
    assert params_for(OPERATIONS["group/addmember"], members) == [
        ("group_alias", "g@x.com"),
        ("members", "m@x.com"),
    ]
    for op, values in [
        ("user/get", {"Alias": "nope"}),
        ("user/get", {}),
        ("user/get", {"Alias": "a@x.com", "alias": "a@x.com"}),
        ("user/list", {"Ver": "-1"}),
        ("user/check", {"email": [f"u{i}@x.com" for i in range(21)]}),
        ("party/sync", {"Action": "3", "DstPath": "a"}),
        ("user/sync", {"Action": "2", "Alias": "a@x.com", "Colour": "red"}),
    ]:
        with pytest.raises(InvalidRequest):
            params_for(OPERATIONS[op], values)
    assert "listen" not in OPERATIONS
    assert OPERATIONS["mail/authkey"].scope == "sso" and OPERATIONS["user/get"].scope == "read"
    assert OPERATIONS["group/add"].scope == "write"


@pytest.mark.parametrize(
    ("exc", "status", "errcode"),
    [
        (InvalidRequest("bad"), 400, None),
        (NotFound("1310", "user_not_found"), 404, "1310"),
        (ApiError("1001", "invalid_parameter"), 409, "1001"),
        (TemporarilyUnavailable("1002", "temporarily_unavailable"), 503, "1002"),
        (ExmailTimeout("slow"), 504, None),
        (HTTPStatusError("x", status=500), 503, None),
        (HTTPStatusError("x", status=404), 502, None),
        (NetworkError("reset"), 502, None),
    ],
)
def test_exmail_errors_map_to_statuses(exc: Exception, status: int, errcode: str | None) -> None:
    problem = from_exmail_error(exc)  # type: ignore[arg-type]
    assert problem.status == status and problem.body().get("errcode") == errcode
    assert ("Retry-After" in problem.headers) == (status == 503)


def test_authentication_compares_every_key_and_hides_them() -> None:
    a = ApiClient("a", (SecretStr("key-a-000000000001"), SecretStr("key-a-000000000002")))
    b = ApiClient("b", (SecretStr("key-b-000000000001"),))
    registry = ClientRegistry([a, b])
    assert registry.authenticate("Bearer key-a-000000000002") is a
    assert registry.authenticate("bearer key-b-000000000001") is b
    for header in ("", "Bearer ", "Bearer key-a-00000000000", "Basic key-a-000000000001"):
        assert registry.authenticate(header) is None
    assert "key-" not in repr(registry) + repr(a) + repr(b)


def test_json_bodies_are_held_to_their_schema_types() -> None:
    """A JSON body's values must have the JSON type its schema gives them: the form
    reading (every value a string) never lets through what the document forbids."""
    sync = OPERATIONS["user/sync"]
    values = json_values(sync, {"action": 2.0, "alias": "a@example.com", "md5": True})
    assert values == {"action": "2", "alias": "a@example.com", "md5": "1"}
    assert json_values(sync, {"alias": "a@example.com", "name": None}) == {"alias": "a@example.com"}
    for bad in (
        {"name": 5},  # a number for a string
        {"action": "2"},  # a string for an integer
        {"action": 2.5},
        {"slaves": "s@example.com"},  # a lone string for an array
        {"slaves": [1]},
        {"alias": None},  # required: null is not allowed
        {"md5": "true"},
    ):
        with pytest.raises(InvalidRequest):
            json_values(sync, {"alias": "a@example.com", **bad})
    with pytest.raises(InvalidRequest):
        json_values(OPERATIONS["user/check"], {"email": "a@example.com"})
