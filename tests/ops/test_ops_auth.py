"""The ops auth middleware on its own, over loopback HTTP: Bearer and Basic credentials,
malformed headers, the challenge it sends, and the paths it leaves open."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from relay.core.bearer import TokenSet
from relay.ops.auth import auth_middleware

# (token, (user, password), open paths) -> base URL of a server behind the middleware
Serve = Callable[[str | None, tuple[str, str] | None, frozenset[str]], Awaitable[str]]


async def hello(_: web.Request) -> web.Response:
    return web.Response(text="hello")


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    runners: list[web.AppRunner] = []

    async def start(
        token: str | None, basic: tuple[str, str] | None, open_paths: frozenset[str]
    ) -> str:
        middleware = auth_middleware(
            tokens=None if token is None else TokenSet.of(token),
            basic=None if basic is None else (basic[0], SecretStr(basic[1])),
            open_paths=open_paths,
        )
        app = web.Application(middlewares=[middleware])
        app.router.add_get("/page", hello)
        app.router.add_get("/livez", hello)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for runner in runners:
        await runner.cleanup()


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def test_bearer_only(serve: Serve) -> None:
    url = await serve("tok-1", None, frozenset({"/livez"}))
    async with aiohttp.ClientSession() as http:
        async with http.get(url + "/page") as resp:
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"] == "Bearer"
            assert "tok-1" not in await resp.text()
        async with http.get(url + "/page", headers={"Authorization": "Bearer tok-1"}) as resp:
            assert resp.status == 200 and await resp.text() == "hello"
        async with http.get(url + "/page", headers={"Authorization": "Bearer tok-12"}) as resp:
            assert resp.status == 401
        # Basic credentials are not accepted when only a token is configured.
        async with http.get(url + "/page", headers=basic("ops", "tok-1")) as resp:
            assert resp.status == 401
        async with http.get(url + "/livez") as resp:
            assert resp.status == 200


async def test_basic_with_malformed_headers(serve: Serve) -> None:
    url = await serve(None, ("ops", "pw:with:colons"), frozenset())
    async with aiohttp.ClientSession() as http:
        async with http.get(url + "/page", headers=basic("ops", "pw:with:colons")) as resp:
            assert resp.status == 200
        for header in (
            "Basic !!!not-base64",
            "Basic " + base64.b64encode(b"\xff\xfe").decode(),
            "Bearer pw:with:colons",
            "basic " + base64.b64encode(b"ops:pw:with:colons").decode(),
        ):
            async with http.get(url + "/page", headers={"Authorization": header}) as resp:
                assert resp.status == 401, header
                assert resp.headers["WWW-Authenticate"] == 'Basic realm="exmail-relay"'
        async with http.get(url + "/page", headers=basic("root", "pw:with:colons")) as resp:
            assert resp.status == 401
        # No open paths: the probe needs credentials too.
        async with http.get(url + "/livez") as resp:
            assert resp.status == 401
