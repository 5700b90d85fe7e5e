"""The token service (:mod:`relay.gateway.tokens`): the cache's accessors with a counting
fake fetch (pure), and the routes against the real emulator, counting its token fetches."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from relay.emulator import Emulator
from relay.exmail import ExmailClient, NetworkError, TokenCache
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


@contextlib.asynccontextmanager
async def token_service(client: ExmailClient, **options: float) -> AsyncIterator[str]:
    app = web.Application()
    app.add_routes(
        token_routes(
            lambda request: client.tokens if request.match_info["tenant"] == "acme" else None,
            **options,
        )
    )
    async with serving(app) as url:
        yield url + "/v1/tenants/acme"


@pytest.fixture
async def service(client: ExmailClient) -> AsyncIterator[str]:
    """The token service with its defaults (``min_token_age`` 60 s)."""
    async with token_service(client) as url:
        yield url


@pytest.fixture
async def eager_service(client: ExmailClient) -> AsyncIterator[str]:
    """The token service with ``min_token_age = 0``: every refresh of the current
    token fetches (what a deployment gets by turning the bound off)."""
    async with token_service(client, min_token_age=0.0) as url:
        yield url


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
    eager_service: str, client: ExmailClient, emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    service = eager_service
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


async def test_a_borrower_refreshing_20_times_in_5_s_causes_at_most_one_fetch(
    service: str, client: ExmailClient, emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """Issue 18: a client with scope ``token`` called ``refresh`` with the current token
    20 times in 5 s and caused 20 token fetches, each voiding the listener's token. A
    token younger than ``min_token_age`` (60 s) is answered as it is."""
    async with http.get(service + "/token") as resp:
        token = (await resp.json())["access_token"]
    fetched = await requests_to(http, emulator, "/cgi-bin/token")
    assert fetched == 1
    started = time.monotonic()
    for _ in range(20):
        async with http.post(service + "/token/refresh", json={"stale": token}) as resp:
            assert resp.status == 200
            token = (await resp.json())["access_token"]  # the borrower uses what it got
        await asyncio.sleep(0.25)
    assert time.monotonic() - started <= 8.0  # about 5 s; slack for a loaded machine
    assert await requests_to(http, emulator, "/cgi-bin/token") - fetched <= 1
    # The listener's token still works: nobody voided it.
    assert (await client.user_get("alice@example.com")).alias == "alice@example.com"
    assert await requests_to(http, emulator, "/cgi-bin/token") - fetched <= 1


async def test_a_token_the_relay_saw_refused_is_replaced_for_a_borrower_at_once(
    service: str, client: ExmailClient, emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    """The bound does not keep a dead token alive: once the relay's own call heard
    ``invalid_token`` for it, a borrower's refresh fetches however young it is."""
    async with http.get(service + "/token") as resp:
        stale = (await resp.json())["access_token"]
    async with http.post(
        emulator.control_url + "faults",
        json={"kind": "invalid_token", "count": 1, "path": "/openapi/user/get"},
    ) as resp:
        assert resp.status == 200
    # The relay's call is refused, renews (fetch 2) and retries.
    assert (await client.user_get("alice@example.com")).alias == "alice@example.com"
    assert await requests_to(http, emulator, "/cgi-bin/token") == 2
    current = await client.token()
    assert current != stale
    async with http.post(service + "/token/refresh", json={"stale": current}) as resp:
        assert (await resp.json())["access_token"] == current  # young, never refused
    assert await requests_to(http, emulator, "/cgi-bin/token") == 2


async def test_a_refusal_the_relay_saw_lets_a_borrower_refresh_a_young_token() -> None:
    fetched: list[str] = []
    failing = False

    async def fetch() -> tuple[SecretStr, float]:
        if failing:
            raise NetworkError("token: connection refused")
        fetched.append(f"t{len(fetched)}")
        return SecretStr(fetched[-1]), 7200.0

    clock = Clock()
    cache = TokenCache(fetch, clock=clock)
    first = await cache.get()
    assert (await cache.refresh(first, min_age=60.0)) is first  # a borrower's word: no
    clock.now += 61.0
    second = await cache.refresh(first, min_age=60.0)  # old enough
    assert second.get_secret_value() == "t1"
    assert (await cache.refresh(second, min_age=60.0)) is second
    # The relay's own call saw Exmail refuse ``second`` and could not renew it (the
    # fetch failed): the next borrower may have it replaced at once, young as it is.
    failing = True
    with pytest.raises(NetworkError):
        await cache.refresh(second)
    failing = False
    third = await cache.refresh(second, min_age=60.0)
    assert third.get_secret_value() == "t2"
    assert fetched == ["t0", "t1", "t2"]
