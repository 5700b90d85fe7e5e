"""Helpers of the gateway's SSO and token tests: an aiohttp app served on a loopback port,
and the emulator's request counters. No mocks: the apps talk to a real emulator."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from relay.emulator import Emulator

ADMIN = "admin@example.com"
KEY = "exmail-demo-key"


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """``app`` on 127.0.0.1, any free port; yields its base URL (no trailing slash)."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def emulator_state(http: aiohttp.ClientSession, emu: Emulator) -> dict[str, Any]:
    async with http.get(emu.control_url + "state") as resp:
        assert resp.status == 200
        state: dict[str, Any] = await resp.json()
        return state


async def requests_to(http: aiohttp.ClientSession, emu: Emulator, path: str) -> int:
    """How many requests the emulator has served on ``path`` (its control API counts)."""
    return int((await emulator_state(http, emu))["requests"].get(path, 0))
