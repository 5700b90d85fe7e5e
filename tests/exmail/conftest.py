"""Fixtures of the exmail client tests: a real emulator on a loopback port, clients
pointed at it, and a small driver for the emulator's control API. No mocks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from relay.emulator import Emulator
from relay.exmail import Backoff, ExmailClient

ADMIN = "admin@example.com"
KEY = "exmail-demo-key"
FIXTURES = Path(__file__).parent / "fixtures"
FAST = Backoff(base=0.01, cap=0.05)


class Control:
    """Drives ``/_emulator/``: deliver mail, change the directory, arm faults, read state."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self._session = session
        self.url = base_url + "/_emulator/"

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        async with self._session.post(self.url + path, json=body) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def fault(self, kind: str, count: int = 1, **extra: Any) -> None:
        await self.post("faults", {"kind": kind, "count": count, **extra})

    async def state(self) -> dict[str, Any]:
        async with self._session.get(self.url + "state") as resp:
            assert resp.status == 200
            result: dict[str, Any] = await resp.json()
            return result

    async def requests(self, path: str) -> int:
        return int((await self.state())["requests"].get(path, 0))


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator(port=0, hold=0.5, token_ttl=7200) as emu:
        yield emu


@pytest.fixture
async def control(emulator: Emulator) -> AsyncIterator[Control]:
    async with aiohttp.ClientSession() as session:
        yield Control(session, emulator.base_url)


@pytest.fixture
async def make_client(emulator: Emulator) -> AsyncIterator[Callable[..., ExmailClient]]:
    """Clients of the demo admin on the emulator, closed at the end of the test."""
    made: list[ExmailClient] = []

    def make(**overrides: Any) -> ExmailClient:
        options: dict[str, Any] = {
            "client_id": ADMIN,
            "client_secret": KEY,
            "api_url": emulator.api_url,
            "token_url": emulator.token_url,
            "login_url": emulator.login_url,
            "timeout": 5.0,
            "listen_timeout": 5.0,
            "backoff": FAST,
        }
        options.update(overrides)
        client = ExmailClient(**options)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


@pytest.fixture
def client(make_client: Callable[..., ExmailClient]) -> ExmailClient:
    return make_client()
