"""Fixtures for the emulator tests: a running emulator on a loopback port, a raw HTTP
helper (aiohttp, no typed client) that fetches tokens and calls operations, and the one
way these tests wait for something to happen: ``eventually`` (and ``held`` on top of it).
No fixed sleep is a synchronisation point and no test asserts how fast a thing was."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import aiohttp
import pytest

from relay.emulator import Emulator
from relay.emulator._http import HUB
from tests.support import eventually

ADMIN = "admin@example.com"
KEY = "exmail-demo-key"

LONG_HOLD = 30.0
"""The hold of ``long_raw``'s emulator: longer than ``WAIT``, so a listen that nothing
woke fails the test (a timeout) rather than answering at its deadline."""
WAIT = 10.0
"""How long a test waits for an answer it expects now: generous, never a speed check."""

Data = Mapping[str, str] | Sequence[tuple[str, str]]


def held_count(emu: Emulator) -> int:
    """How many listens the emulator holds right now (every company)."""
    return emu.app[HUB].open_count()


async def held(emu: Emulator, count: int = 1, *, seconds: float = WAIT) -> None:
    """Wait until the emulator holds exactly ``count`` listens. A listen counts once it
    waits on the hub, so a push or change made after this wakes it, never races it."""
    try:
        await eventually(
            lambda: held_count(emu) == count, seconds=seconds, what=f"{count} held listen(s)"
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}; holding {held_count(emu)}") from None


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
async def long_raw(session: aiohttp.ClientSession) -> AsyncIterator[Raw]:
    """A ``Raw`` against an emulator that holds a listen for ``LONG_HOLD``: a test waits
    ``WAIT`` for an answer, so only a wake can answer in time; it asserts what woke it."""
    async with Emulator(port=0, hold=LONG_HOLD) as e:
        r = Raw(e, session)
        await r.fetch_token()
        yield r


@pytest.fixture
def make_raw(session: aiohttp.ClientSession) -> Any:
    """``make_raw(emu)``: a ``Raw`` helper for an emulator the test started itself."""
    return lambda emu: Raw(emu, session)


@pytest.fixture
async def raw(emu: Emulator, session: aiohttp.ClientSession) -> Raw:
    r = Raw(emu, session)
    await r.fetch_token()
    return r
