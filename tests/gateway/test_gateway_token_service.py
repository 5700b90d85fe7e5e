"""The token service (:mod:`relay.gateway.tokens`): the cache's accessors with a counting
fake fetch (pure), and the routes against the real emulator, counting its token fetches."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from relay.emulator import Emulator
from relay.exmail import ExmailClient, TokenCache
from relay.gateway.tokens import token_routes
from tests.gateway.sso_support import ADMIN, KEY, requests_to, serving
from tests.support import eventually


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_current_and_expires_in_never_fetch() -> None:
    fetched: list[str] = []

    async def fetch() -> tuple[SecretStr, float]:
        fetched.append(f"t{len(fetched)}")
        return SecretStr(fetched[-1]), 100.0

    clock = Clock()
    cache = TokenCache(fetch, clock=clock)
    assert cache.current() is None and cache.expires_in == 0.0
    assert fetched == []
    await cache.get()
    current = cache.current()
    assert current is not None and current.get_secret_value() == "t0"
    assert cache.expires_in == 90.0  # renewed 10 % early: borrowers come back in time
    clock.now += 89.5
    assert cache.expires_in == 0.5
    clock.now += 1.0
    assert cache.current() is None and cache.expires_in == 0.0
    assert fetched == ["t0"]


async def test_a_herd_of_50_refreshes_with_one_stale_token_fetches_once() -> None:
    fetched: list[str] = []
    release = asyncio.Event()

    async def fetch() -> tuple[SecretStr, float]:
        fetched.append(f"t{len(fetched)}")
        if len(fetched) > 1:
            await release.wait()  # the herd piles up behind the one fetch in flight
        return SecretStr(fetched[-1]), 7200.0

    cache = TokenCache(fetch)
    stale = await cache.get()
    herd = [asyncio.create_task(cache.refresh(stale)) for _ in range(50)]
    await eventually(lambda: len(fetched) == 2, what="the refresh in flight")
    release.set()
    tokens = await asyncio.gather(*herd)
    assert {t.get_secret_value() for t in tokens} == {"t1"}
    assert fetched == ["t0", "t1"]
    # A late member of the herd, still holding the old token, gets the current one.
    assert (await cache.refresh(stale)).get_secret_value() == "t1"
    assert cache.fetches == 2


@pytest.fixture
async def client(emulator: Emulator) -> AsyncIterator[ExmailClient]:
    async with ExmailClient(
        client_id=ADMIN,
        client_secret=KEY,
        api_url=emulator.api_url,
        token_url=emulator.token_url,
        login_url=emulator.login_url,
        timeout=5.0,
    ) as c:
        yield c


@pytest.fixture
async def service(client: ExmailClient) -> AsyncIterator[str]:
    app = web.Application()
    app.add_routes(
        token_routes(
            lambda request: client.tokens if request.match_info["tenant"] == "acme" else None
        )
    )
    async with serving(app) as url:
        yield url + "/v1/tenants/acme"


async def test_get_token_is_the_listeners_token(
    service: str, client: ExmailClient, emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    first = await client.token()  # the relay's own use (the listener) fetched it
    async with http.get(service + "/token") as resp:
        assert resp.status == 200
        assert resp.headers["Cache-Control"] == "no-store"
        body = await resp.json()
    assert body["access_token"] == first
    assert 7000 < body["expires_in"] <= 7200
    assert await requests_to(http, emulator, "/cgi-bin/token") == 1
    # The borrowed token works upstream, and the relay's own calls still work too.
    async with http.post(
        emulator.api_url + "user/get",
        data={"Alias": "alice@example.com"},
        headers={"Authorization": f"Bearer {body['access_token']}"},
    ) as resp:
        assert (await resp.json())["Alias"] == "alice@example.com"
    assert (await client.user_get("alice@example.com")).alias == "alice@example.com"
    assert await requests_to(http, emulator, "/cgi-bin/token") == 1


async def test_a_herd_of_50_refreshes_over_http_fetches_once_upstream(
    service: str, client: ExmailClient, emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    async with http.get(service + "/token") as resp:
        stale = (await resp.json())["access_token"]
    assert await requests_to(http, emulator, "/cgi-bin/token") == 1

    async def refresh() -> str:
        async with http.post(service + "/token/refresh", json={"stale": stale}) as resp:
            assert resp.status == 200
            token: str = (await resp.json())["access_token"]
            return token

    tokens = await asyncio.gather(*(refresh() for _ in range(50)))
    assert len(set(tokens)) == 1 and tokens[0] != stale
    assert await requests_to(http, emulator, "/cgi-bin/token") == 2
    # The listener's client holds the new token too: no fetch of its own.
    assert await client.token() == tokens[0]
    assert (await client.user_get("alice@example.com")).alias == "alice@example.com"
    assert await requests_to(http, emulator, "/cgi-bin/token") == 2
    # A stale token that is not the current one: the current one, no fetch.
    async with http.post(service + "/token/refresh", json={"stale": "long-gone"}) as resp:
        assert (await resp.json())["access_token"] == tokens[0]
    assert await requests_to(http, emulator, "/cgi-bin/token") == 2


async def test_errors_are_problems(
    service: str, emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    async with http.get(service.replace("/acme", "/nobody") + "/token") as resp:
        assert resp.status == 404
        assert resp.content_type == "application/problem+json"
    for body in (b"not json", b'{"stale": 5}', b"[]", b'{"stale": ""}'):
        async with http.post(service + "/token/refresh", data=body) as resp:
            assert resp.status == 400
            assert (await resp.json())["status"] == 400
    async with http.post(service + "/token/refresh", data=b"x" * 5000) as resp:
        assert resp.status == 413
    async with http.post(
        emulator.control_url + "faults",
        json={"kind": "errcode_1002", "count": 1, "path": "/cgi-bin/token"},
    ) as resp:
        assert resp.status == 200
    async with http.get(service + "/token") as resp:
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "5"
        text = await resp.text()
    assert "errcode 1002" in text
    async with http.get(service + "/token") as resp:  # the fault was one-shot
        assert resp.status == 200
