"""The pure parts of the gateway for the second API: which catalogue a tenant takes and
what a body becomes (:mod:`relay.gateway.catalogues`), the member mapped onto the first
API's user shape, and the unread feed's source for callback tenants. No I/O."""

from __future__ import annotations

import datetime as dt

import pytest

from relay.core.events import callback_unread
from relay.exmail import InvalidRequest
from relay.exmail2 import Member
from relay.gateway.catalogues import FirstCall, SecondCall, plan, scope_of
from relay.gateway.problems import Problem
from relay.gateway.unread import UnreadCache, UnreadFeed
from relay.gateway.upstream import member_as_user
from relay.runtime.observer import Observer

BIG = 4913577855806636138  # above 2**53


def test_a_get_operation_of_the_second_api_goes_in_the_query() -> None:
    call = plan("orient", "api2", "user/list", {"department_id": BIG, "fetch_child": 1}, form=False)
    assert isinstance(call, SecondCall)
    assert call.call.query == {"department_id": BIG, "fetch_child": 1}
    assert call.call.body is None


def test_a_post_operation_of_the_second_api_is_a_json_body() -> None:
    body = {"userid": "a@x.org", "option": [{"type": 2, "value": "1"}]}
    call = plan("orient", "api2", "useroption/update", body, form=False)
    assert isinstance(call, SecondCall) and call.call.body == body and call.call.query == {}


def test_a_form_is_text_and_a_lone_value_of_an_array_field_is_a_list() -> None:
    call = plan("orient", "api2", "user/batchcheck", {"userlist": "a@x.org"}, form=True)
    assert isinstance(call, SecondCall) and call.call.body == {"userlist": ["a@x.org"]}
    with pytest.raises(Problem) as refused:  # a list of objects: JSON only
        plan("orient", "api2", "useroption/update", {"userid": "a@x.org"}, form=True)
    assert refused.value.status == 415


def test_json_is_held_to_its_types_but_two_point_zero_is_an_integer() -> None:
    call = plan("orient", "api2", "department/list", {"id": 2.0}, form=False)
    assert isinstance(call, SecondCall) and call.call.query == {"id": 2}
    for bad in ({"id": "2"}, {"id": True}, {"id": 0}, {"id": 2**64}, {"other": 1}):
        with pytest.raises(InvalidRequest):
            plan("orient", "api2", "department/list", bad, form=False)


def test_the_first_api_keeps_its_catalogue() -> None:
    call = plan("acme", "openapi", "user/get", {"alias": "a@x.org"}, form=False)
    assert isinstance(call, FirstCall) and call.params == [("Alias", "a@x.org")]


@pytest.mark.parametrize(
    ("api", "name", "body"),
    [
        ("api2", "party/list", {}),
        ("openapi", "department/list", {}),
        ("api2", "user/get", {"alias": "a@x.org"}),
        ("openapi", "user/get", {"userid": "a@x.org"}),
        ("openapi", "mail/newcount", {"userid": "a@x.org", "begin_date": "2026-01-01"}),
    ],
)
def test_the_other_apis_operation_or_body_is_404_naming_the_api(
    api: str, name: str, body: dict[str, object]
) -> None:
    with pytest.raises(Problem) as refused:
        plan("t", api, name, body, form=False)  # type: ignore[arg-type]
    assert refused.value.status == 404 and refused.value.kind == "operation-not-in-api"
    assert refused.value.body()["api"] == api


def test_a_body_neither_api_takes_is_400() -> None:
    with pytest.raises(InvalidRequest):
        plan("t", "api2", "user/get", {"userid": "nope"}, form=False)
    with pytest.raises(InvalidRequest):
        plan("t", "openapi", "user/get", {"alias": "nope"}, form=False)


def test_scopes_are_the_same_for_shared_names_and_unknown_names_are_404() -> None:
    assert scope_of("user/get") == "read"
    assert scope_of("service/get_login_url") == "sso"
    assert scope_of("department/create") == "write"
    assert scope_of("log/mail") == "read"
    with pytest.raises(Problem) as refused:
        scope_of("listen")
    assert refused.value.kind == "unknown-operation"


def test_a_member_takes_the_first_apis_user_shape() -> None:
    member = Member.model_validate(
        {
            "userid": "zs@x.org",
            "name": "张三",
            "department": [BIG, 1],
            "gender": "1",
            "enable": 0,
            "slaves": ["z@x.org"],
            "extid": "07",
            "cpwd_login": 1,
        }
    )
    user = member_as_user(member)
    assert user["alias"] == "zs@x.org" and user["name"] == "张三"
    assert user["gender"] == 1 and user["slave_list"] == ["z@x.org"] and user["ext_id"] == "07"
    assert user["open_type"] == 2  # enable 0: disabled
    assert user["department"] == [BIG, 1] and user["cpwd_login"] == 1 and user["enable"] == 0
    assert user["party_list"] == {"count": 0, "entries": []}


def test_callback_tenants_feed_the_cache_as_callback() -> None:
    cache = UnreadCache()
    feed = UnreadFeed(Observer(), cache, callback_tenants=["orient"])
    now = dt.datetime.now(dt.UTC)
    for tenant in ("orient", "acme"):
        event = callback_unread(
            tenant=tenant, user="a@x.org", unread=3, at=int(now.timestamp()), now=now
        )
        feed.tenant(tenant).committed([event])
    held_orient, held_acme = cache.get("orient", "a@x.org"), cache.get("acme", "a@x.org")
    assert held_orient is not None and held_orient.source == "callback" and held_orient.count == 3
    assert held_acme is not None and held_acme.source == "listen"
