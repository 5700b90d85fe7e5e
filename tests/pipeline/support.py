"""Support for pipeline tests: the real emulator on loopback, the real RabbitMQ on
127.0.0.1:5672 (fresh exchange and queue names per test), a TCP proxy that can be
stopped to simulate a broker outage, and helpers to run a relay service in-process."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import pytest

from relay.app.settings import Settings
from relay.emulator import Emulator
from tests.support import AMQP_URL, eventually

ADMIN = "admin@example.com"
KEY = "exmail-demo-key"


@dataclass
class Broker:
    exchange: str
    queue: str
    url: str = AMQP_URL

    def amqp_settings(self, url: str | None = None) -> dict[str, Any]:
        return {
            "enabled": True,
            "url": url or self.url,
            "exchange": self.exchange,
            "queue": self.queue,
        }


@pytest.fixture
async def broker() -> AsyncIterator[Broker]:
    name = f"test.{uuid.uuid4().hex[:12]}"
    yield Broker(exchange=name, queue=name)
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(name)
        await channel.exchange_delete(name)


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator(port=0, hold=1.0) as emu:
        yield emu


async def control(emu: Emulator, path: str, body: Any = None, method: str = "POST") -> Any:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"{emu.base_url}/_emulator/{path}", json=body) as resp,
    ):
        data = await resp.json()
        assert resp.status < 400, data
        return data


async def accounts(emu: Emulator) -> list[str]:
    state = await control(emu, "state", method="GET")
    return [a["alias"] for a in state["companies"][0]["accounts"]]


def settings_for(
    emu: Emulator, tmp_path: Path, broker: Broker | None = None, **sections: Any
) -> Settings:
    tenant = {
        "name": "acme",
        "client_id": ADMIN,
        "client_secret": KEY,
        "api_url": emu.api_url,
        "token_url": emu.token_url,
        "login_url": emu.login_url,
        "hold": 1.0,
    }
    tenant.update(sections.pop("tenant", {}))
    data: dict[str, Any] = {
        "journal": {"path": tmp_path / "journal.sqlite3"},
        "tenants": [tenant],
        "http": {"enabled": False},
    }
    if broker is not None:
        data["amqp"] = broker.amqp_settings()
    data.update(sections)
    if "amqp" in data and "sharding" not in data:
        # These tests are about one relay that runs its tenants all along; lease mode
        # (the default with [amqp]) has its own tests in tests/runtime.
        data["sharding"] = {"mode": "static"}
    return Settings(**data)


class Consumer:
    """Collects every message from the test's queue (declared like the relay does)."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.messages: list[aio_pika.abc.AbstractIncomingMessage] = []
        self._connection: aio_pika.abc.AbstractConnection | None = None

    async def __aenter__(self) -> Consumer:
        self._connection = await aio_pika.connect(self.broker.url)
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=500)
        exchange = await channel.declare_exchange(
            self.broker.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(
            self.broker.queue, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await queue.bind(exchange, routing_key="#")

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            self.messages.append(message)
            await message.ack()

        await queue.consume(on_message)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def wait_for(self, count: int, seconds: float = 30.0) -> None:
        await eventually(
            lambda: len(self.messages) >= count, seconds=seconds, what=f"{count} messages"
        )
