"""Pure pieces without I/O: documented limits, backoff policy, error mapping, token cache."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from relay.exmail import (
    ApiError,
    Backoff,
    ExmailTimeout,
    HTTPStatusError,
    InvalidCredentials,
    InvalidRequest,
    InvalidToken,
    MalformedResponse,
    NetworkError,
    NotFound,
    ResponseTooLarge,
    TemporarilyUnavailable,
    is_transient,
)
from relay.exmail._exceptions import api_error
from relay.exmail._requests import (
    GroupAddRequest,
    GroupAllowListRequest,
    GroupMembersRequest,
    PartySyncRequest,
    UserSyncRequest,
)
from relay.exmail._token import TokenCache

# -- documented limits -------------------------------------------------------------


def _slaves(n: int) -> list[str]:
    return [f"s{i}@example.com" for i in range(n)]


def test_user_sync_renders_documented_spellings_and_repeats_lists() -> None:
    request = UserSyncRequest.model_validate(
        {
            "action": 2,
            "alias": "bob@example.com",
            "name": "Bob",
            "gender": 1,
            "password": "hunter2",
            "md5": False,
            "party_paths": ["a/b", "c"],
            "slaves": _slaves(5),
            "open_type": 1,
        }
    )
    params = request.params()
    assert params[:3] == [("Action", "2"), ("Alias", "bob@example.com"), ("Name", "Bob")]
    assert [v for k, v in params if k == "PartyPath"] == ["a/b", "c"]
    assert [v for k, v in params if k == "Slave"] == _slaves(5)
    assert ("Md5", "0") in params
    assert ("OpenType", "1") in params
    assert "hunter2" not in repr(request)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"action": 4}, "Action"),
        ({"action": "x"}, "Action"),
        ({"alias": "bob"}, "Alias"),
        # taken as given, as the OpenAPI document's pattern says: no trimming
        ({"alias": " bob@example.com "}, "Alias"),
        ({"alias": "b" * 65 + "@example.com"}, "Alias"),
        ({"party_paths": [" a/b"]}, "no space at either end"),
        ({"slaves": _slaves(6)}, "at most 5"),
        ({"slaves": ["not-an-email"]}, "Slave"),
        ({"party_paths": ["a/b/c/d/e/f"]}, "at most 5 levels"),
        ({"party_paths": ["x" * 65]}, "64 characters"),
        ({"party_paths": ["a//b"]}, "empty department"),
        ({"gender": 0}, "Gender"),
        ({"open_type": 3}, "OpenType"),
    ],
)
def test_user_sync_limits(fields: dict[str, object], message: str) -> None:
    data: dict[str, object] = {"action": 3, "alias": "bob@example.com"} | fields
    with pytest.raises(InvalidRequest, match=message):
        UserSyncRequest.model_validate(data)


def test_limits_at_the_boundary_are_accepted() -> None:
    path = "/".join(["x" * 64] * 5)
    request = UserSyncRequest.model_validate(
        {"action": 3, "alias": "b@example.com", "party_paths": [path], "slaves": _slaves(5)}
    )
    assert request.party_paths == (path,)


def test_party_sync_rules() -> None:
    assert PartySyncRequest.model_validate({"action": 2, "dst_path": "/a/b/"}).params() == [
        ("Action", "2"),
        ("DstPath", "a/b"),
    ]
    assert PartySyncRequest.model_validate(
        {"action": 3, "src_path": "a", "dst_path": "b"}
    ).params() == [("Action", "3"), ("SrcPath", "a"), ("DstPath", "b")]
    with pytest.raises(InvalidRequest, match="MOD needs both"):
        PartySyncRequest.model_validate({"action": 3, "dst_path": "b"})
    with pytest.raises(InvalidRequest, match="DstPath"):
        PartySyncRequest.model_validate({"action": 1})
    with pytest.raises(InvalidRequest, match="root"):
        PartySyncRequest.model_validate({"action": 1, "dst_path": ""})


def test_group_rules() -> None:
    request = GroupAddRequest.model_validate(
        {"name": "Team", "admin": "team@example.com", "status": "LIST", "members": ["a@x.com"]}
    )
    assert request.params() == [
        ("group_name", "Team"),
        ("group_admin", "team@example.com"),
        ("status", "list"),
        ("members", "a@x.com"),
    ]
    with pytest.raises(InvalidRequest, match="status must be one of all, inner, group, list"):
        GroupAddRequest.model_validate(
            {"name": "T", "admin": "t@x.com", "status": "public", "members": []}
        )
    with pytest.raises(InvalidRequest, match="members"):
        GroupMembersRequest.model_validate({"alias": "t@x.com", "members": []})
    allow = GroupAllowListRequest.model_validate(
        {"alias": "t@x.com", "allow_list": "a@x.com, b@x.com"}
    )
    assert allow.params() == [("group_alias", "t@x.com"), ("allow_list", "a@x.com,b@x.com")]


# -- backoff -----------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap() -> None:
    policy = Backoff(base=0.5, cap=3.0)
    assert [policy.ceiling(a) for a in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert policy.delay(1, 0.5) == 0.5
    assert policy.delay(10, 1.0) == 3.0


@given(
    st.integers(min_value=0, max_value=10_000),
    st.floats(min_value=0.0, max_value=1.0),
    st.floats(min_value=0.0, max_value=100.0),
    st.floats(min_value=0.0, max_value=100.0),
)
def test_backoff_full_jitter_bounds(attempt: int, fraction: float, base: float, cap: float) -> None:
    policy = Backoff(base=base, cap=cap)
    delay = policy.delay(attempt, fraction)
    assert 0.0 <= delay <= min(cap, policy.ceiling(attempt)) + 1e-12


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="fraction"):
        Backoff().delay(0, 1.5)
    with pytest.raises(ValueError, match="attempt"):
        Backoff().ceiling(-1)


# -- error mapping -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("errcode", "error", "cls"),
    [
        ("1200", "invalid_token", InvalidToken),
        ("1002", "temporarily_unavailable", TemporarilyUnavailable),
        ("1310", "party_not_found", NotFound),
        ("1400", "", NotFound),
        ("9999", "user_not_found", NotFound),
        ("1101", "invalid_client", InvalidCredentials),
        ("1500", "already_exists", ApiError),
    ],
)
def test_api_error_mapping(errcode: str, error: str, cls: type[ApiError]) -> None:
    exc = api_error(errcode, error, operation="user/get")
    assert type(exc) is cls
    assert exc.errcode == errcode
    assert str(exc).startswith("user/get: errcode " + errcode)


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (NetworkError("x"), True),
        (ExmailTimeout("x"), True),
        (MalformedResponse("x"), True),
        (HTTPStatusError("x", status=503), True),
        (HTTPStatusError("x", status=404), False),
        (TemporarilyUnavailable("1002", "temporarily_unavailable"), True),
        (InvalidToken("1200", "invalid_token"), False),
        (NotFound("1400", ""), False),
        (ResponseTooLarge("x"), False),
        (InvalidRequest("x"), False),
        (ValueError("x"), False),
    ],
)
def test_is_transient(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient


# -- token cache (the fetch is a plain function: no network) ---------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_token_single_flight_and_stale_refresh() -> None:
    fetched: list[str] = []
    reasons: list[str] = []

    async def fetch() -> tuple[SecretStr, float]:
        await asyncio.sleep(0.01)
        fetched.append(f"t{len(fetched)}")
        return SecretStr(fetched[-1]), 100.0

    clock = Clock()
    cache = TokenCache(fetch, on_token=reasons.append, clock=clock)
    tokens = await asyncio.gather(*(cache.get() for _ in range(50)))
    assert {t.get_secret_value() for t in tokens} == {"t0"}
    assert fetched == ["t0"]
    # Twenty callers see 1200 with the same stale token: one new fetch, shared.
    stale = tokens[0]
    again = await asyncio.gather(*(cache.refresh(stale) for _ in range(20)))
    assert {t.get_secret_value() for t in again} == {"t1"}
    # Expiry: renewed 10 % early (margin capped at 60 s).
    clock.now += 89.0
    assert (await cache.get()).get_secret_value() == "t1"
    clock.now += 2.0
    assert (await cache.get()).get_secret_value() == "t2"
    assert (await cache.get(force=True)).get_secret_value() == "t3"
    assert reasons == ["initial", "invalid_token", "expired", "forced"]
    assert cache.fetches == 4
    assert "t3" not in repr(cache)
