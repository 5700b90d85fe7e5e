"""Fixtures for the emulator tests: a running emulator on a loopback port and a raw
HTTP helper (aiohttp, no typed client) that fetches tokens and calls operations."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import aiohttp
import pytest

from relay.emulator import Emulator

ADMIN = "admin@example.com"
KEY = "exmail-demo-key"

Data = Mapping[str, str] | Sequence[tuple[str, str]]


class Raw:
    """Raw HTTP against one emulator."""

    def __init__(self, emu: Emulator, session: aiohttp.ClientSession) -> None:
        self.emu = emu
        self.session = session
        self.token = ""

    async def fetch_token(self, client_id: str = ADMIN, secret: str = KEY) -> str:
        data = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
        async with self.session.post(self.emu.token_url, data=data) as resp:
            body = await resp.json()
        self.token = body["access_token"]
        return self.token

    async def call_raw(
        self,
        operation: str,
        data: Data | None = None,
        *,
        method: str = "POST",
        token: str | None = None,
    ) -> tuple[int, bytes]:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        url = self.emu.api_url + operation
        if method == "GET":
            resp = await self.session.get(url, params=data, headers=headers)
        else:
            resp = await self.session.post(url, data=data, headers=headers)
        async with resp:
            return resp.status, await resp.read()

    async def call(self, operation: str, data: Data | None = None, **kw: Any) -> Any:
        """Call and decode JSON; an empty body (a write's success) decodes as None."""
        status, body = await self.call_raw(operation, data, **kw)
        assert status == 200, body
        return json.loads(body) if body else None

    async def control(
        self, path: str, body: Any = None, *, method: str = "POST"
    ) -> tuple[int, Any]:
        url = self.emu.base_url + "/_emulator/" + path
        async with self.session.request(method, url, json=body) as resp:
            return resp.status, await resp.json()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(port=0, hold=0.3) as e:
        yield e


@pytest.fixture
def make_raw(session: aiohttp.ClientSession) -> Any:
    """``make_raw(emu)``: a ``Raw`` helper for an emulator the test started itself."""
    return lambda emu: Raw(emu, session)


@pytest.fixture
async def raw(emu: Emulator, session: aiohttp.ClientSession) -> Raw:
    r = Raw(emu, session)
    await r.fetch_token()
    return r
