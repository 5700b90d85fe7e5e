"""Every /v1 route against the real emulator: user/get, unread, SSO, openapi/{operation}."""

from __future__ import annotations

import logging
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from relay.app.wiring import Running
from relay.emulator import Emulator
from tests.gateway.conftest import (
    PORTAL_KEY,
    WRITER_KEY,
    aliases,
    base,
    bearer,
    control,
    requests_to,
)
from tests.gateway.test_gateway_auth import assert_problem, call
from tests.support import eventually


async def test_user_get_answers_typed_json(
    relay: Running, http: aiohttp.ClientSession, emulator: Emulator
) -> None:
    user = (await aliases(http, emulator))[0]
    status, _, body = await call(
        http, "GET", f"{base(relay)}/v1/tenants/acme/users/{user}", headers=bearer(PORTAL_KEY)
    )
    assert status == 200, body
    assert body["alias"] == user
    assert {"name", "gender", "slave_list", "party_list", "open_type"} <= set(body)
    status, head, body = await call(
        http,
        "GET",
        f"{base(relay)}/v1/tenants/acme/users/nobody@example.com",
        headers=bearer(PORTAL_KEY),
    )
    assert_problem(status, head, body, 404)
    assert body["errcode"]
    status, head, body = await call(
        http, "GET", f"{base(relay)}/v1/tenants/acme/users/not-an-email", headers=bearer(PORTAL_KEY)
    )
    assert_problem(status, head, body, 400)
    assert body["type"].endswith(":invalid-request")


async def test_sso_answers_a_login_url_and_audits_the_user_not_the_ticket(
    relay: Running,
    http: aiohttp.ClientSession,
    emulator: Emulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="relay.gateway.audit")
    user = (await aliases(http, emulator))[0]
    status, _, body = await call(
        http,
        "POST",
        f"{base(relay)}/v1/tenants/acme/sso",
        headers=bearer(PORTAL_KEY),
        json={"email": user},
    )
    assert status == 200, body
    assert body["expires_in"] == 300
    url = urlsplit(body["url"])
    assert body["url"].startswith(emulator.login_url)
    query = parse_qs(url.query)
    assert query["user"] == [user] and query["agent"] == ["admin@example.com"]
    ticket = query["ticket"][0]
    # The ticket logs the user in at the emulator's login page.
    async with http.get(body["url"], allow_redirects=False) as resp:
        assert resp.status < 400
    lines = [r for r in caplog.records if r.name == "relay.gateway.audit"]
    sso = [r for r in lines if getattr(r, "route", "") == "POST /v1/tenants/{tenant}/sso"]
    assert len(sso) == 1
    record = sso[0]
    assert (record.client, record.tenant, record.status, record.user) == (  # type: ignore[attr-defined]
        "portal",
        "acme",
        200,
        user,
    )
    assert all(ticket not in str(vars(r)) for r in caplog.records)


async def test_openapi_reads_with_form_and_json_bodies(
    relay: Running, http: aiohttp.ClientSession, emulator: Emulator
) -> None:
    user = (await aliases(http, emulator))[0]
    root = f"{base(relay)}/v1/tenants/acme/openapi"
    status, _, body = await call(
        http, "POST", root + "/user/get", headers=bearer(PORTAL_KEY), data={"Alias": user}
    )
    assert status == 200, body
    assert body["Alias"] == user  # the upstream JSON, as Exmail spells it
    status, _, body = await call(
        http, "POST", root + "/user/check", headers=bearer(PORTAL_KEY), json={"email": [user]}
    )
    assert status == 200, body
    assert "List" in body
    status, _, body = await call(
        http, "POST", root + "/party/list", headers=bearer(PORTAL_KEY), json={}
    )
    assert status == 200, body


async def test_openapi_writes_go_through_the_request_models(
    relay: Running, http: aiohttp.ClientSession, emulator: Emulator
) -> None:
    root = f"{base(relay)}/v1/tenants/acme/openapi"
    alias = "gateway.new@" + (await aliases(http, emulator))[0].split("@")[1]
    status, _, body = await call(
        http,
        "POST",
        root + "/user/sync",
        headers=bearer(WRITER_KEY),
        data=[("Action", "2"), ("Alias", alias), ("Name", "New"), ("Password", "Secret-123456")],
    )
    assert status == 200, body
    assert alias in await aliases(http, emulator)
    # the same model refuses what the client refuses, before anything is sent
    before = await requests_to(http, emulator, "/openapi/user/sync")
    bad = [
        {"Action": 2, "Alias": alias, "Slave": [f"s{i}@x.com" for i in range(6)]},  # > 5 slaves
        {"Action": 9, "Alias": alias},  # no such action
        {"Action": 2, "Alias": alias, "Nickname": "x"},  # no such parameter
    ]
    for payload in bad:
        status, head, body = await call(
            http, "POST", root + "/user/sync", headers=bearer(WRITER_KEY), json=payload
        )
        assert_problem(status, head, body, 400)
    assert await requests_to(http, emulator, "/openapi/user/sync") == before


async def test_openapi_refuses_listen_unknown_operations_big_bodies_and_other_media(
    relay: Running, http: aiohttp.ClientSession
) -> None:
    root = f"{base(relay)}/v1/tenants/acme/openapi"
    for operation in ("listen", "user/frobnicate"):
        status, head, body = await call(
            http, "POST", f"{root}/{operation}", headers=bearer(WRITER_KEY), json={}
        )
        assert_problem(status, head, body, 404)
        assert body["type"].endswith(":unknown-operation")
    status, head, body = await call(
        http,
        "POST",
        root + "/user/check",
        headers=bearer(WRITER_KEY),
        json={"email": ["a" * 100 + "@x.com"] * 1000},
    )
    assert_problem(status, head, body, 413)
    status, head, body = await call(
        http,
        "POST",
        root + "/user/get",
        headers={**bearer(WRITER_KEY), "Content-Type": "text/plain"},
        data=b"Alias=a@b.com",
    )
    assert_problem(status, head, body, 415)


async def test_unread_answers_from_listen_without_an_upstream_call(
    relay: Running, http: aiohttp.ClientSession, emulator: Emulator
) -> None:
    user = (await aliases(http, emulator))[1]
    url = f"{base(relay)}/v1/tenants/acme/users/{user}/unread"
    listener = relay.service.listeners[0]
    await eventually(lambda: listener.status.state == "connected", what="the listener")
    assert relay.gateway is not None
    cache = relay.gateway.unread
    assert cache.get("acme", user) is None
    await control(http, emulator, "mail", {"to": user, "subject": "one"})
    await eventually(lambda: cache.get("acme", user) is not None, what="the count from listen")
    held = cache.get("acme", user)
    assert held is not None and held.source == "listen" and held.count >= 1
    count = held.count
    before = await requests_to(http, emulator, "/openapi/mail/newcount")
    status, _, body = await call(http, "GET", url + "?max_age=600", headers=bearer(PORTAL_KEY))
    assert status == 200, body
    assert body["unread"] == count and body["source"] == "listen" and body["age"] >= 0
    assert await requests_to(http, emulator, "/openapi/mail/newcount") == before

    # max_age=0: always upstream, and the answer is recorded
    status, _, body = await call(http, "GET", url + "?max_age=0", headers=bearer(PORTAL_KEY))
    assert status == 200, body
    assert (body["unread"], body["source"], body["age"]) == (count, "upstream", 0.0)
    assert await requests_to(http, emulator, "/openapi/mail/newcount") == before + 1
    status, _, body = await call(http, "GET", url + "?max_age=600", headers=bearer(PORTAL_KEY))
    assert (body["unread"], body["source"]) == (count, "cache")
    assert await requests_to(http, emulator, "/openapi/mail/newcount") == before + 1

    status, head, body = await call(http, "GET", url + "?max_age=-1", headers=bearer(PORTAL_KEY))
    assert_problem(status, head, body, 400)


async def test_unread_of_a_user_never_seen_calls_upstream(
    relay: Running, http: aiohttp.ClientSession, emulator: Emulator
) -> None:
    user = (await aliases(http, emulator))[2]
    url = f"{base(relay)}/v1/tenants/acme/users/{user}/unread"
    before = await requests_to(http, emulator, "/openapi/mail/newcount")
    status, _, body = await call(http, "GET", url, headers=bearer(PORTAL_KEY))
    assert status == 200, body
    assert body["source"] == "upstream" and isinstance(body["unread"], int)
    assert await requests_to(http, emulator, "/openapi/mail/newcount") == before + 1
