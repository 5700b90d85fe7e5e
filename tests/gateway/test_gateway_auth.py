"""Who may call the gateway: Bearer keys, rotation, scopes, tenants, and the gateway off."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from relay.app.wiring import Running
from relay.emulator import Emulator
from tests.gateway.conftest import (
    LIMITED_KEY,
    PORTAL_KEY,
    PORTAL_KEY_2,
    READER_KEY,
    WRITER_KEY,
    aliases,
    base,
    bearer,
    gateway_settings,
)
from tests.support import running_relay

PROBLEM = "application/problem+json"


async def call(
    http: aiohttp.ClientSession, method: str, url: str, **kw: Any
) -> tuple[int, dict[str, str], Any]:
    async with http.request(method, url, **kw) as resp:
        body = await resp.json(content_type=None)
        return resp.status, dict(resp.headers), body


def assert_problem(status: int, headers: dict[str, str], body: Any, expected: int) -> None:
    assert status == expected, body
    assert headers["Content-Type"].startswith(PROBLEM)
    assert body["status"] == expected
    assert body["type"].startswith("urn:exmail-relay:problem:")
    assert body["title"] and body["detail"]


async def test_no_header_and_a_wrong_key_get_401_with_a_challenge(
    relay: Running, http: aiohttp.ClientSession
) -> None:
    url = base(relay) + "/v1/tenants"
    for headers in ({}, bearer("not-a-configured-key-0000"), {"Authorization": "Basic eDp5"}):
        status, head, body = await call(http, "GET", url, headers=headers)
        assert_problem(status, head, body, 401)
        assert head["WWW-Authenticate"] == 'Bearer realm="exmail-relay"'


async def test_each_key_of_a_rotated_client_works(
    relay: Running, http: aiohttp.ClientSession
) -> None:
    url = base(relay) + "/v1/tenants"
    for key in (PORTAL_KEY, PORTAL_KEY_2):
        status, head, body = await call(http, "GET", url, headers=bearer(key))
        assert status == 200, body
        assert head["Content-Type"].startswith("application/json")
        assert [t["name"] for t in body["tenants"]] == ["acme"]


async def test_tenants_lists_only_what_the_client_may_use(
    relay: Running, http: aiohttp.ClientSession
) -> None:
    url = base(relay) + "/v1/tenants"
    _, _, portal = await call(http, "GET", url, headers=bearer(PORTAL_KEY))
    assert [t["name"] for t in portal["tenants"]] == ["acme"]
    # "waiting": for its turn to fetch its first token ([sharding] takeover_rate)
    assert portal["tenants"][0]["state"] in ("starting", "waiting", "connected")
    _, _, reader = await call(http, "GET", url, headers=bearer(READER_KEY))
    assert reader == {"tenants": []}  # zeta only, and zeta is not served here


async def test_a_missing_scope_is_403_naming_the_scope(
    relay: Running, http: aiohttp.ClientSession, emulator: Emulator
) -> None:
    user = (await aliases(http, emulator))[0]
    root = base(relay) + "/v1/tenants/acme"
    cases = [
        (WRITER_KEY, "POST", "/sso", {"json": {"email": user}}, "sso"),
        (
            PORTAL_KEY,
            "POST",
            "/openapi/party/sync",
            {"json": {"Action": 2, "DstPath": "x"}},
            "write",
        ),
        (WRITER_KEY, "POST", "/openapi/mail/authkey", {"json": {"Alias": user}}, "sso"),
        (LIMITED_KEY, "POST", "/openapi/user/openwxtoken", {"json": {"alias": user}}, "write"),
    ]
    for key, method, path, kw, scope in cases:
        status, head, body = await call(http, method, root + path, headers=bearer(key), **kw)
        assert_problem(status, head, body, 403)
        assert body["scope"] == scope
        assert repr(scope) in body["detail"]


async def test_a_tenant_outside_the_clients_list_is_403_an_unknown_one_404(
    relay: Running, http: aiohttp.ClientSession, emulator: Emulator
) -> None:
    user = (await aliases(http, emulator))[0]
    status, head, body = await call(
        http, "GET", f"{base(relay)}/v1/tenants/acme/users/{user}", headers=bearer(READER_KEY)
    )
    assert_problem(status, head, body, 403)
    assert body["type"].endswith(":tenant-forbidden")
    status, head, body = await call(
        http, "GET", f"{base(relay)}/v1/tenants/nope/users/{user}", headers=bearer(PORTAL_KEY)
    )
    assert_problem(status, head, body, 404)
    assert body["type"].endswith(":unknown-tenant")
    status, head, body = await call(
        http, "GET", f"{base(relay)}/v1/nothing/here", headers=bearer(PORTAL_KEY)
    )
    assert_problem(status, head, body, 404)


async def test_without_clients_every_gateway_route_is_404_even_with_an_ops_token(
    emulator: Emulator, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    s = gateway_settings(
        emulator, tmp_path, clients=[], http={"port": 0, "auth_token": "ops-token-00000000"}
    )
    async with running_relay(s) as run:
        assert run.gateway is None
        for method, path in (("GET", "/v1/tenants"), ("POST", "/v1/tenants/acme/sso")):
            status, head, body = await call(
                http, method, base(run) + path, headers=bearer(PORTAL_KEY)
            )
            assert_problem(status, head, body, 404)
            assert body["type"].endswith(":gateway-off")
        # the ops routes keep their own token; a client key is not it
        async with http.get(base(run) + "/status.json", headers=bearer(PORTAL_KEY)) as resp:
            assert resp.status == 401
