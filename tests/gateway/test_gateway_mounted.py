"""The signed SSO links and the token service mounted on the running relay's server, end
to end against the real emulator: per-client link secrets (scope ``sso``, the client's
tenants only, ``single_use``), the configured login URL, scope ``token``, one token for
the listener and every borrower, metrics and the audit line for both."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from relay.app.wiring import Running
from relay.core.links import sign_sso_link
from relay.emulator import Emulator
from tests.gateway.conftest import (
    KIOSK_LINK_SECRET,
    PORTAL_KEY,
    PORTAL_LINK_SECRET,
    TOKEN_KEY,
    WRITER_LINK_SECRET,
    ZETA_LINK_SECRET,
    base,
    bearer,
    gateway_settings,
    requests_to,
)
from tests.support import running_relay


def link(run: Running, email: str, secret: str, *, tenant: str = "acme", ttl: int = 300) -> str:
    return sign_sso_link(
        base_url=base(run),
        tenant=tenant,
        email=email,
        secret=secret.encode(),
        expires_at=int(time.time()) + ttl,
    )


async def follow(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with http.get(url, allow_redirects=False) as resp:
        return resp.status, resp.headers.get("Location", "")


async def test_a_signed_link_redirects_to_the_tenants_login_url(
    relay: Running, emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    status, location = await follow(http, link(relay, "Carol@Example.com", PORTAL_LINK_SECRET))
    assert status == 302
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == emulator.login_url
    query = parse_qs(parts.query)
    assert query["user"] == ["carol@example.com"] and query["ticket"][0]
    # The browser lands on the emulator's page for the right account.
    async with http.get(location) as resp:
        assert resp.status == 200
        assert ">carol@example.com</h1>" in await resp.text()
    # Not single-use for this client: the same link works again.
    assert (await follow(http, link(relay, "carol@example.com", PORTAL_LINK_SECRET)))[0] == 302


async def test_links_refused_without_sso_scope_for_other_tenants_tampered_or_expired(
    relay: Running, http: aiohttp.ClientSession
) -> None:
    good = link(relay, "carol@example.com", PORTAL_LINK_SECRET)
    refused = [
        link(relay, "carol@example.com", WRITER_LINK_SECRET),  # writer lacks scope sso
        link(relay, "carol@example.com", ZETA_LINK_SECRET),  # zeta-portal: zeta only
        link(relay, "carol@example.com", "not-any-clients-secret"),
        link(relay, "carol@example.com", PORTAL_LINK_SECRET, ttl=-120),  # expired
        good.replace("carol", "bob"),  # tampered
        good.replace("sig=", "sig=A"),
    ]
    for url in refused:
        async with http.get(url, allow_redirects=False) as resp:
            assert resp.status == 403, url
            assert "Location" not in resp.headers
            assert "not valid" in await resp.text()
    assert (await follow(http, good))[0] == 302


async def test_a_single_use_link_is_refused_the_second_time(
    relay: Running, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    url = link(relay, "carol@example.com", KIOSK_LINK_SECRET)
    caplog.set_level(logging.INFO, logger="relay.gateway.audit")
    assert (await follow(http, url))[0] == 302
    assert (await follow(http, url))[0] == 403
    outcomes = [getattr(r, "outcome", None) for r in caplog.records]
    assert outcomes[-2:] == ["redirected", "replayed"]
    assert all(getattr(r, "client", None) == "kiosk" for r in caplog.records[-2:])
    assert KIOSK_LINK_SECRET not in caplog.text and "sig=" not in caplog.text
    async with http.get(f"{base(relay)}/metrics") as resp:
        metrics = await resp.text()
    assert (
        'exmail_relay_api_requests_total{client="kiosk",code="302",route="/sso/{tenant}/{email}"}'
        " 1.0" in metrics
    )
    assert (
        'exmail_relay_api_requests_total{client="kiosk",code="403",route="/sso/{tenant}/{email}"}'
        " 1.0" in metrics
    )


async def test_the_token_service_lends_the_listeners_token(
    relay: Running, emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    root = f"{base(relay)}/v1/tenants/acme"
    listener_token = await relay.service.listeners[0].client.token()
    async with http.get(root + "/token", headers=bearer(TOKEN_KEY)) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.json()
    assert body["access_token"] == listener_token
    assert await requests_to(http, emulator, "/cgi-bin/token") == 1
    # Scope token is needed: the portal (sso, read) gets a 403 naming it.
    async with http.get(root + "/token", headers=bearer(PORTAL_KEY)) as resp:
        assert resp.status == 403
        assert resp.content_type == "application/problem+json"
        assert (await resp.json())["scope"] == "token"
    async with http.get(root + "/token") as resp:
        assert resp.status == 401 and "WWW-Authenticate" in resp.headers
    async with http.get(f"{base(relay)}/v1/tenants/nobody/token", headers=bearer(TOKEN_KEY)) as r:
        assert r.status == 404
        assert (await r.json())["type"] == "urn:exmail-relay:problem:unknown-tenant"

    async def refresh() -> str:
        async with http.post(
            root + "/token/refresh", json={"stale": listener_token}, headers=bearer(TOKEN_KEY)
        ) as resp:
            assert resp.status == 200
            token: str = (await resp.json())["access_token"]
            return token

    # The token is younger than [gateway] min_token_age (60 s) and the relay never saw
    # it refused: the borrowers' word alone voids nothing, they get it back unchanged.
    tokens = await asyncio.gather(*(refresh() for _ in range(50)))
    assert set(tokens) == {listener_token}
    assert await requests_to(http, emulator, "/cgi-bin/token") == 1
    assert await relay.service.listeners[0].client.token() == tokens[0]
    async with http.post(root + "/token/refresh", data=b"[]", headers=bearer(TOKEN_KEY)) as resp:
        assert resp.status == 400
        assert (await resp.json())["type"] == "urn:exmail-relay:problem:invalid-request"
    async with http.get(f"{base(relay)}/metrics") as resp:
        metrics = await resp.text()
    route = "/v1/tenants/{tenant}/token/refresh"
    assert f'{{client="tokens",code="200",route="{route}"}} 50.0' in metrics


async def test_the_configured_max_link_ttl_bounds_the_links_the_relay_takes(
    emulator: Emulator, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async def status(run: Running, ttl: int) -> int:
        return (await follow(http, link(run, "carol@example.com", PORTAL_LINK_SECRET, ttl=ttl)))[0]

    async with running_relay(gateway_settings(emulator, tmp_path / "default")) as run:
        assert [await status(run, ttl) for ttl in (300, 1000, 30 * 86400)] == [302, 403, 403]
    longer = gateway_settings(emulator, tmp_path / "longer", gateway={"max_link_ttl": "20m"})
    async with running_relay(longer) as run:
        assert [await status(run, ttl) for ttl in (1000, 1300)] == [302, 403]
