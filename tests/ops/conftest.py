"""Fixtures of the operations tests: the emulator, a running relay built from settings in
code, a loopback TCP proxy in front of RabbitMQ (stop it and the broker "goes away"),
unique exchange/queue names that are deleted afterwards. No mocks."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import pytest

from relay.app.settings import Settings
from relay.emulator import Emulator
from tests.support import AMQP_URL, BROKER_ADDRESS, TcpProxy, eventually

__all__ = ["eventually"]  # re-exported: the ops tests import it from here

ADMIN = "admin@example.com"
KEY = "exmail-demo-key"
BROKER = AMQP_URL


@pytest.fixture
async def proxy() -> AsyncIterator[TcpProxy]:
    p = TcpProxy(*BROKER_ADDRESS)
    await p.start()
    yield p
    await p.stop()


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator(port=0, hold=0.5) as emu:
        yield emu


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class Control:
    def __init__(self, session: aiohttp.ClientSession, emu: Emulator) -> None:
        self.session = session
        self.url = emu.base_url + "/_emulator/"

    async def state(self) -> dict[str, Any]:
        async with self.session.get(self.url + "state") as resp:
            assert resp.status == 200
            data: dict[str, Any] = await resp.json()
            return data

    async def aliases(self) -> list[str]:
        return [a["alias"] for a in (await self.state())["companies"][0]["accounts"]]

    async def mail(self, to: str, **extra: Any) -> None:
        async with self.session.post(self.url + "mail", json={"to": to, **extra}) as resp:
            assert resp.status == 200, await resp.text()

    async def fault(self, kind: str, count: int = 1) -> None:
        async with self.session.post(
            self.url + "faults", json={"kind": kind, "count": count}
        ) as resp:
            assert resp.status == 200, await resp.text()


@pytest.fixture
def control(http: aiohttp.ClientSession, emulator: Emulator) -> Control:
    return Control(http, emulator)


@pytest.fixture
async def amqp_names() -> AsyncIterator[tuple[str, str]]:
    suffix = uuid.uuid4().hex[:10]
    names = (f"test.ops.{suffix}", f"test.ops.{suffix}.q")
    yield names
    connection = await aio_pika.connect(BROKER, timeout=5)
    async with connection:
        channel = await connection.channel()
        with contextlib.suppress(Exception):
            await channel.queue_delete(names[1])
        channel = await connection.channel()
        with contextlib.suppress(Exception):
            await channel.exchange_delete(names[0])


def tenant(
    emu: Emulator, *, name: str = "acme", secret: str = KEY, client_id: str = ADMIN
) -> dict[str, Any]:
    return {
        "name": name,
        "client_id": client_id,
        "client_secret": secret,
        "api_url": emu.api_url,
        "token_url": emu.token_url,
        "login_url": emu.login_url,
        "hold": 0.5,
        "request_timeout": 5,
    }


def settings(tmp_path: Path, **sections: Any) -> Settings:
    base: dict[str, Any] = {
        "journal": {"path": str(tmp_path / "journal.sqlite3"), "synchronous": "normal"},
        "http": {"port": 0},
        "shutdown": {"timeout": 3},
    }
    base.update(sections)
    return Settings(**base)


async def get_json(session: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, Any]:
    async with session.get(url, **kw) as resp:
        return resp.status, await resp.json()
