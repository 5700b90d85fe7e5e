"""The gateway for tenants of the second API, on real parts: the emulator (both APIs over
loopback), a relay with one tenant of each API (``acme``: the BizMail OpenApi,
``orient``: ``api = "api2"``) and real HTTP calls to its ``/v1/`` and ``/sso/`` routes.

The shared routes answer one JSON shape for both APIs; ``openapi/{operation}`` takes the
tenant's own catalogue and refuses the other's with 404 ``operation-not-in-api``; the
token service hands out one application's token of an api2 tenant (``?app=``)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from openapi_spec_validator import validate

from relay.app.wiring import Running
from relay.core.links import sign_sso_link
from relay.emulator import Emulator
from relay.emulator._callback import CallbackSender, CallbackTarget
from relay.exmail import User
from tests.gateway.api2_support import (
    AES_KEY,
    BOTH_KEY,
    BOTH_LINK_SECRET,
    CALLBACK_TOKEN,
    CORPID,
    api2_tenant,
    both_apis_settings,
    openapi_tenant,
    zeta_off,
)
from tests.gateway.conftest import READER_KEY, base, bearer, control
from tests.support import eventually, running_relay

PROBLEM = "urn:exmail-relay:problem:"


@pytest.fixture
async def both(emulator: Emulator, tmp_path: Path) -> AsyncIterator[Running]:
    async with running_relay(both_apis_settings(emulator, tmp_path)) as run:
        yield run


async def _get(http: aiohttp.ClientSession, url: str, key: str = BOTH_KEY) -> tuple[int, Any]:
    async with http.get(url, headers=bearer(key)) as resp:
        return resp.status, await resp.json(content_type=None)


async def _post(
    http: aiohttp.ClientSession, url: str, body: Any = None, key: str = BOTH_KEY
) -> tuple[int, Any]:
    async with http.post(url, json=body, headers=bearer(key)) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_the_tenant_list_names_both(both: Running, http: aiohttp.ClientSession) -> None:
    status, body = await _get(http, f"{base(both)}/v1/tenants")
    assert status == 200
    states = {t["name"]: t["state"] for t in body["tenants"]}
    assert set(states) == {"acme", "orient"} and states["orient"] == "callback"


async def test_a_user_has_one_shape_for_both_apis(
    both: Running, http: aiohttp.ClientSession, emulator: Emulator
) -> None:
    first_status, first = await _get(http, f"{base(both)}/v1/tenants/acme/users/bob@example.com")
    status, second = await _get(http, f"{base(both)}/v1/tenants/orient/users/zhangsan@example.org")
    assert (first_status, status) == (200, 200), (first, second)
    assert set(User.model_fields) <= set(first) and set(User.model_fields) <= set(second)
    assert second["alias"] == "zhangsan@example.org"
    assert second["open_type"] == 1 and second["enable"] == 1
    member = emulator.api2.tenants[CORPID].member("zhangsan@example.org")
    assert second["name"] == member.name
    # 64-bit department ids, exact (above 2**53), only in the second API's answer
    assert second["department"] and all(isinstance(d, int) for d in second["department"])
    assert any(d > 2**53 for d in second["department"]), second["department"]
    assert "department" not in first and second["party_list"] == {"count": 0, "entries": []}


async def test_an_unknown_member_is_the_same_problem_as_in_the_first_api(
    both: Running, http: aiohttp.ClientSession
) -> None:
    _, first = await _get(http, f"{base(both)}/v1/tenants/acme/users/nobody@example.com")
    status, second = await _get(http, f"{base(both)}/v1/tenants/orient/users/nobody@example.org")
    assert status == 404 and first["status"] == 404
    assert second["type"] == first["type"] == PROBLEM + "upstream-not-found"
    assert second["errcode"] == "60111"


async def test_unread_asks_newcount_then_keeps_what_callbacks_say(
    both: Running, http: aiohttp.ClientSession, emulator: Emulator
) -> None:
    url = f"{base(both)}/v1/tenants/orient/users/lisi@example.org/unread"
    status, before = await _get(http, url + "?max_age=0")
    assert status == 200 and before["source"] == "upstream"
    assert before["unread"] == emulator.api2.tenants[CORPID].member("lisi@example.org").unread
    await control(http, emulator, "api2/mail", {"to": "lisi@example.org", "title": "Hi"})
    _, after = await _get(http, url + "?max_age=0")
    assert after["unread"] == before["unread"] + 1
    _, held = await _get(http, url + "?max_age=300")
    assert held["source"] == "cache" and held["unread"] == after["unread"]
    # An UnRead callback to the relay's /callback/orient: committed, and in the cache.
    target = CallbackTarget(
        url=f"{base(both)}/callback/orient",
        token=CALLBACK_TOKEN,
        encoding_aes_key=AES_KEY,
        corpid=CORPID,
    )
    delivery = await CallbackSender(http).send_unread(target, user="lisi@example.org", unread=17)
    assert delivery.attempts[-1].status == 200
    _, pushed = await _get(http, url + "?max_age=300")
    assert pushed == {**pushed, "source": "callback", "unread": 17}


async def test_sso_returns_the_apis_one_time_login_url(
    both: Running, http: aiohttp.ClientSession, emulator: Emulator
) -> None:
    status, body = await _post(
        http, f"{base(both)}/v1/tenants/orient/sso", {"email": "amy@example.org"}
    )
    assert status == 200, body
    assert body["expires_in"] == 300
    assert body["url"].startswith(emulator.login_url + "?") and "method=openapi" in body["url"]
    async with http.get(body["url"]) as page:
        assert page.status == 200  # the emulator's login page lets amy in, once
    async with http.get(body["url"]) as again:
        assert again.status == 403


async def test_a_signed_link_redirects_into_an_api2_mailbox(
    both: Running, http: aiohttp.ClientSession, emulator: Emulator
) -> None:
    link = sign_sso_link(
        base_url=base(both),
        tenant="orient",
        email="ben@example.org",
        secret=BOTH_LINK_SECRET.encode(),
        expires_at=int(time.time()) + 60,
    )
    async with http.get(link, allow_redirects=False) as resp:
        assert resp.status == 302
        location = resp.headers["Location"]
    assert location.startswith(emulator.login_url + "?") and "userid=ben@example.org&" in location
    async with http.get(location) as page:
        assert page.status == 200
    logins = emulator.api2.tenants[CORPID].logins
    assert [entry["userid"] for entry in logins] == ["ben@example.org"]


async def test_openapi_takes_each_tenants_own_catalogue(
    both: Running, http: aiohttp.ClientSession
) -> None:
    v1 = f"{base(both)}/v1/tenants"
    status, parties = await _post(http, f"{v1}/orient/openapi/department/list", {})
    assert status == 200, parties
    assert parties["department"][0]["id"] == 1
    ids = [d["id"] for d in parties["department"]]
    created = await _post(
        http,
        f"{v1}/orient/openapi/user/create",
        {"userid": "new@example.org", "name": "New", "department": [ids[-1]], "password": "Pw1"},
    )
    assert created[0] == 200 and created[1]["errmsg"] == "created", created
    status, user = await _post(http, f"{v1}/orient/openapi/user/get", {"userid": "new@example.org"})
    assert status == 200 and user["department"] == [ids[-1]]  # an exact 64-bit id
    status, first = await _post(http, f"{v1}/acme/openapi/user/get", {"alias": "bob@example.com"})
    assert status == 200 and first["Alias"] == "bob@example.com"
    # a form works for the second API too (text taken as numbers where the schema says)
    async with http.post(
        f"{v1}/orient/openapi/user/list",
        data={"department_id": "1", "fetch_child": "1"},
        headers=bearer(BOTH_KEY),
    ) as resp:
        listed = await resp.json()
        assert resp.status == 200, listed
    assert "new@example.org" in {u["userid"] for u in listed["userlist"]}


@pytest.mark.parametrize(
    ("tenant", "operation", "body", "api"),
    [
        ("orient", "party/list", {}, "api2"),
        ("orient", "mail/authkey", {"alias": "amy@example.org"}, "api2"),
        ("acme", "department/list", {}, "openapi"),
        ("acme", "service/get_login_url", {"userid": "bob@example.com"}, "openapi"),
        # a name both APIs have, with the other API's body
        ("orient", "user/get", {"alias": "amy@example.org"}, "api2"),
        ("acme", "user/get", {"userid": "bob@example.com"}, "openapi"),
        ("acme", "user/list", {"department_id": 1}, "openapi"),
    ],
)
async def test_the_other_apis_operations_are_refused_naming_the_tenants_api(
    both: Running,
    http: aiohttp.ClientSession,
    tenant: str,
    operation: str,
    body: dict[str, Any],
    api: str,
) -> None:
    status, problem = await _post(
        http, f"{base(both)}/v1/tenants/{tenant}/openapi/{operation}", body
    )
    assert status == 404, problem
    assert problem["type"] == PROBLEM + "operation-not-in-api"
    assert problem["api"] == api and f"tenant {tenant!r}" in problem["detail"]


async def test_a_body_breaking_the_api2_schema_is_400_and_nothing_is_sent(
    both: Running, http: aiohttp.ClientSession, emulator: Emulator
) -> None:
    v1 = f"{base(both)}/v1/tenants/orient/openapi"
    before = len(emulator.api2.tenants[CORPID].members)
    for operation, body in [
        ("user/get", {"userid": "not-an-address"}),
        ("user/get", {"userid": "amy@example.org", "extra": 1}),
        ("user/batchcheck", {"userlist": [f"u{n}@example.org" for n in range(21)]}),
        ("user/create", {"userid": "x@example.org", "name": "X", "department": "1"}),
        ("department/list", {"id": "1"}),  # JSON: a string is not a number
    ]:
        status, problem = await _post(http, f"{v1}/{operation}", body)
        assert status == 400, (operation, problem)
        assert problem["type"] == PROBLEM + "invalid-request"
    assert len(emulator.api2.tenants[CORPID].members) == before


async def test_scopes_hold_for_api2_operations(both: Running, http: aiohttp.ClientSession) -> None:
    # "portal" has sso and read: a read passes, a write needs scope write
    from tests.gateway.conftest import PORTAL_KEY

    v1 = f"{base(both)}/v1/tenants/orient/openapi"
    status, _ = await _post(http, f"{v1}/tag/list", {}, key=PORTAL_KEY)
    assert status == 200
    status, problem = await _post(
        http, f"{v1}/department/create", {"name": "Ops", "parentid": 1}, key=PORTAL_KEY
    )
    assert status == 403 and problem["scope"] == "write"
    status, _ = await _get(
        http, f"{base(both)}/v1/tenants/orient/users/amy@example.org", READER_KEY
    )
    assert status == 403  # reader may use zeta only


async def test_the_token_service_hands_out_one_applications_token(
    both: Running, http: aiohttp.ClientSession, emulator: Emulator
) -> None:
    tenants = f"{base(both)}/v1/tenants"
    status, token = await _get(http, f"{tenants}/orient/token")
    assert status == 200, token  # default: the directory application's
    async with http.get(
        f"{emulator.api2_url}user/get",
        params={"access_token": token["access_token"], "userid": "amy@example.org"},
    ) as resp:
        assert (await resp.json())["errcode"] == 0  # the borrowed token works upstream
    status, sso = await _get(http, f"{tenants}/orient/token?app=sso")
    assert status == 200 and sso["access_token"] != token["access_token"]
    # the gateway's own calls and the directory poll share the same cache: after the
    # poll's first listing, still one fetch of the directory token
    tally = next(t for t in both.service.callbacks if t.tenant == "orient")
    assert tally.directory is not None

    def polled() -> bool:
        assert tally.directory is not None
        return tally.directory().last_ok_at is not None

    await eventually(polled, what="the first directory poll of orient")
    status, again = await _get(http, f"{tenants}/orient/token?app=directory")
    assert again["access_token"] == token["access_token"]
    status, _ = await _get(http, f"{tenants}/orient/users/amy@example.org")
    assert status == 200
    assert emulator.api2.token_fetches[(CORPID, "directory")] == 1
    for url in (f"{tenants}/orient/token?app=bogus", f"{tenants}/acme/token?app=directory"):
        status, problem = await _get(http, url)
        assert status == 404 and problem["type"] == PROBLEM + "unknown-app", problem


async def test_the_document_lists_both_catalogues(
    both: Running, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{base(both)}/v1/openapi.json") as resp:
        document = await resp.json()
    validate(document)
    ops = "/v1/tenants/{tenant}/openapi/"
    paths = document["paths"]
    assert paths[ops + "department/list"]["post"]["x-api"] == ["api2"]
    assert paths[ops + "party/list"]["post"]["x-api"] == ["openapi"]
    shared = paths[ops + "user/get"]["post"]
    assert shared["x-api"] == ["openapi", "api2"]
    assert len(shared["requestBody"]["content"]["application/json"]["schema"]["anyOf"]) == 2
    assert paths[ops + "service/get_login_url"]["post"]["x-scopes"] == ["sso"]
    token_params = {p["name"] for p in paths["/v1/tenants/{tenant}/token"]["get"]["parameters"]}
    assert "app" in token_params


async def test_a_call_needing_an_application_the_tenant_lacks_is_409(
    emulator: Emulator, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    lean = {**api2_tenant(emulator), "sso_secret": None, "log_secret": None}
    settings = both_apis_settings(
        emulator, tmp_path, tenants=[openapi_tenant(emulator), lean, zeta_off(emulator)]
    )
    async with running_relay(settings) as run:
        v1 = f"{base(run)}/v1/tenants/orient"
        status, problem = await _post(http, f"{v1}/sso", {"email": "amy@example.org"})
        assert status == 409 and problem["type"] == PROBLEM + "app-not-configured"
        assert "sso_secret" in problem["detail"]
        status, problem = await _post(
            http,
            f"{v1}/openapi/log/batchjob",
            {"begin_date": "2026-01-01", "end_date": "2026-01-02"},
        )
        assert status == 409 and "log_secret" in problem["detail"]
        link = sign_sso_link(
            base_url=base(run),
            tenant="orient",
            email="amy@example.org",
            secret=BOTH_LINK_SECRET.encode(),
            expires_at=int(time.time()) + 60,
        )
        async with http.get(link, allow_redirects=False) as resp:
            assert resp.status == 502
        status, _ = await _get(http, f"{v1}/users/amy@example.org")
        assert status == 200  # the directory application is there


@pytest.mark.parametrize(
    ("fault", "status", "kind"),
    [
        ({"kind": "errcode_1002"}, 503, "upstream-unavailable"),  # errcode -1: busy
        (
            {"kind": "api_error", "errcode": 60011, "errmsg": "no privilege"},
            409,
            "upstream-refused",
        ),
        ({"kind": "http_500"}, 503, "upstream-unavailable"),
        ({"kind": "malformed"}, 502, "upstream-failed"),
    ],
)
async def test_the_second_apis_errors_are_the_first_apis_problems(
    both: Running,
    http: aiohttp.ClientSession,
    emulator: Emulator,
    fault: dict[str, Any],
    status: int,
    kind: str,
) -> None:
    await control(http, emulator, "faults", {**fault, "count": 1, "path": "/cgi-bin/user/get"})
    got, problem = await _get(http, f"{base(both)}/v1/tenants/orient/users/amy@example.org")
    assert (got, problem["type"]) == (status, PROBLEM + kind), problem
    if fault["kind"] == "api_error":
        assert problem["errcode"] == "60011"


async def test_a_refused_token_is_replaced_once_and_the_call_answers(
    both: Running, http: aiohttp.ClientSession, emulator: Emulator
) -> None:
    url = f"{base(both)}/v1/tenants/orient/users/amy@example.org"
    assert (await _get(http, url))[0] == 200
    fetched = emulator.api2.token_fetches[(CORPID, "directory")]
    await control(
        http, emulator, "faults", {"kind": "invalid_token", "count": 1, "path": "/cgi-bin/user/get"}
    )
    status, user = await _get(http, url)
    assert status == 200 and user["alias"] == "amy@example.org"
    assert emulator.api2.token_fetches[(CORPID, "directory")] == fetched + 1
