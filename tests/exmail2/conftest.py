"""Fixtures of the second API's client tests: a real emulator on a loopback port, clients
of its demo tenant pointed at it, and a driver for its control API. No mocks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from relay.emulator import Emulator
from relay.exmail import Backoff
from relay.exmail2 import App, Exmail2Client

CORPID = "wwdemo0000000001"
SECRETS = {app.value: f"demo-{app.value}-secret" for app in App}
FAST = Backoff(base=0.01, cap=0.05)


class Control:
    """Drives ``/_emulator/`` (and its ``api2/`` part): faults, mail, tokens, state."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self._session = session
        self.url = base_url + "/_emulator/"

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        async with self._session.post(self.url + path, json=body) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def fault(self, kind: str, path: str, count: int = 1, **extra: Any) -> None:
        await self.post("faults", {"kind": kind, "count": count, "path": path, **extra})

    async def requests(self, path: str) -> int:
        async with self._session.get(self.url + "state") as resp:
            return int((await resp.json())["requests"].get(path, 0))

    async def token_fetches(self, app: str = "directory") -> int:
        async with self._session.get(self.url + "api2/state") as resp:
            tenants = (await resp.json())["tenants"]
        return int(next(t for t in tenants if t["corpid"] == CORPID)["token_fetches"][app])


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator(port=0, hold=0.5) as emu:
        yield emu


@pytest.fixture
async def control(emulator: Emulator) -> AsyncIterator[Control]:
    async with aiohttp.ClientSession() as session:
        yield Control(session, emulator.base_url)


@pytest.fixture
async def make_client(emulator: Emulator) -> AsyncIterator[Callable[..., Exmail2Client]]:
    """Clients of the demo tenant on the emulator, closed at the end of the test."""
    made: list[Exmail2Client] = []

    def make(**overrides: Any) -> Exmail2Client:
        options: dict[str, Any] = {
            "corpid": CORPID,
            "secrets": SECRETS,
            "base_url": emulator.api2_url,
            "timeout": 5.0,
            "backoff": FAST,
        }
        options.update(overrides)
        client = Exmail2Client(**options)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


@pytest.fixture
def client(make_client: Callable[..., Exmail2Client]) -> Exmail2Client:
    return make_client()
