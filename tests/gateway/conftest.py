"""Fixtures of the gateway tests: the emulator on loopback, a running relay with
``[[clients]]`` (real HTTP server on port 0), an aiohttp session. No mocks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from relay.app.settings import Settings
from relay.app.wiring import Running
from relay.emulator import Emulator
from tests.support import running_relay

ADMIN = "admin@example.com"
SECRET = "exmail-demo-key"

PORTAL_KEY = "portal-key-0000000000000001"
PORTAL_KEY_2 = "portal-key-rotated-00000002"
WRITER_KEY = "writer-key-0000000000000001"
READER_KEY = "reader-key-0000000000000001"
LIMITED_KEY = "limited-key-000000000000001"
TOKEN_KEY = "tokens-key-0000000000000001"
KIOSK_KEY = "kiosk-key-00000000000000001"
ZETA_KEY = "zeta-portal-key-00000000001"
ZETA_LINK_SECRET = "zeta-link-secret-000001"
PORTAL_LINK_SECRET = "portal-link-secret-0001"
KIOSK_LINK_SECRET = "kiosk-link-secret-00001"
WRITER_LINK_SECRET = "writer-link-secret-0001"
LINK_SECRETS = (PORTAL_LINK_SECRET, KIOSK_LINK_SECRET, WRITER_LINK_SECRET, ZETA_LINK_SECRET)
ALL_KEYS = (
    PORTAL_KEY,
    PORTAL_KEY_2,
    WRITER_KEY,
    READER_KEY,
    LIMITED_KEY,
    TOKEN_KEY,
    KIOSK_KEY,
    ZETA_KEY,
)

CLIENTS: list[dict[str, Any]] = [
    # every tenant, SSO and reads; a rotated second key
    {
        "name": "portal",
        "key": [PORTAL_KEY, PORTAL_KEY_2],
        "scopes": ["sso", "read"],
        "rate": 1000,
        "burst": 1000,
        "link_secret": PORTAL_LINK_SECRET,
    },
    # acme only, reads and writes; a link secret but no scope sso: its links are refused
    {
        "name": "writer",
        "key": WRITER_KEY,
        "tenants": ["acme"],
        "scopes": ["read", "write"],
        "link_secret": WRITER_LINK_SECRET,
    },
    # only the tenant "zeta": acme is not allowed
    {"name": "reader", "key": READER_KEY, "tenants": ["zeta"], "scopes": ["read"]},
    {"name": "limited", "key": LIMITED_KEY, "scopes": ["read"], "rate": 0.01, "burst": 2},
    # the token service only (a TokenShare-style borrower)
    {"name": "tokens", "key": TOKEN_KEY, "scopes": ["token"], "rate": 1000, "burst": 1000},
    # single-use SSO links, acme only
    {
        "name": "kiosk",
        "key": KIOSK_KEY,
        "tenants": ["acme"],
        "scopes": ["sso"],
        "link_secret": KIOSK_LINK_SECRET,
        "single_use": True,
    },
    # SSO links for zeta only: its links for acme are refused
    {
        "name": "zeta-portal",
        "key": ZETA_KEY,
        "tenants": ["zeta"],
        "scopes": ["sso"],
        "link_secret": ZETA_LINK_SECRET,
    },
]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def gateway_settings(emu: Emulator, tmp_path: Path, **sections: Any) -> Settings:
    def tenant(name: str, client_id: str) -> dict[str, Any]:
        return {
            "name": name,
            "client_id": client_id,
            "client_secret": SECRET,
            "api_url": emu.api_url,
            "token_url": emu.token_url,
            "login_url": emu.login_url,
            "hold": 0.5,
            "request_timeout": 2,
        }

    data: dict[str, Any] = {
        "journal": {"path": str(tmp_path / "journal.sqlite3"), "synchronous": "normal"},
        # zeta is configured (so a client may name it) but not enabled: not served here
        "tenants": [
            tenant("acme", ADMIN),
            {**tenant("zeta", "zeta@example.com"), "enabled": False},
        ],
        "http": {"port": 0},
        "shutdown": {"timeout": 3},
        "clients": CLIENTS,
    }
    data.update(sections)
    return Settings(**data)


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator(port=0, hold=0.5) as emu:
        yield emu


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def relay(emulator: Emulator, tmp_path: Path) -> AsyncIterator[Running]:
    async with running_relay(gateway_settings(emulator, tmp_path)) as run:
        yield run


def base(run: Running) -> str:
    assert run.server is not None
    return run.server.url.rstrip("/")


async def control(
    http: aiohttp.ClientSession, emu: Emulator, path: str, body: Any = None, method: str = "POST"
) -> Any:
    async with http.request(method, f"{emu.base_url}/_emulator/{path}", json=body) as resp:
        data = await resp.json()
        assert resp.status < 400, data
        return data


async def requests_to(http: aiohttp.ClientSession, emu: Emulator, path: str) -> int:
    state = await control(http, emu, "state", method="GET")
    return int(state["requests"].get(path, 0))


async def aliases(http: aiohttp.ClientSession, emu: Emulator) -> list[str]:
    state = await control(http, emu, "state", method="GET")
    return [a["alias"] for a in state["companies"][0]["accounts"]]
