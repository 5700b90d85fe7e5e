"""Lease mode: only the owner of an api2 tenant's shard polls its directory; after a
takeover the new owner polls, and its baseline of the same listing has the old owner's
id (docs/leases.md, "Directory polls of api2 tenants"). Two relays in-process, the real
RabbitMQ, the emulator."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import pytest

from relay.app.settings import Settings
from relay.app.wiring import Running
from relay.emulator import Emulator
from tests.pipeline.support import Broker, Consumer, control
from tests.support import AMQP_URL, eventually, running_relay

pytestmark = pytest.mark.rabbitmq

CORPID = "wwdirlease0000001"
SECRET = "directory-lease-secret"
DOMAIN = "lease.test"
DEPLOYMENT_SECRET = "lease-test-deployment-secret-0123456789"


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = f"test.dirlease.{uuid.uuid4().hex[:10]}"
    yield name
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(name)
        await channel.exchange_delete(name)
        await channel.exchange_delete(f"{name}.presence")
        for shard in range(16):
            await channel.queue_delete(f"{name}.checkpoint.{shard}")


def lease_settings(emu: Emulator, tmp_path: Path, replica: str, prefix: str) -> Settings:
    return Settings(
        journal={"path": tmp_path / f"{replica}.sqlite3"},
        tenants=[{"name": "leaseco", "api": "api2", "corpid": CORPID, "contact_secret": SECRET,
                  "callback_token": "tok12345", "encoding_aes_key": "k" * 43,
                  "api_url": emu.api2_url, "directory_interval": 1}],
        amqp={"enabled": True, "url": AMQP_URL, "exchange": prefix, "queue": prefix},
        sharding={"replica_id": replica, "prefix": prefix, "heartbeat": 2,
                  "secret": DEPLOYMENT_SECRET},
        http={"host": "127.0.0.1", "port": 0},
        shutdown={"timeout": 3},
    )  # fmt: skip


def polling(running: Running) -> bool:
    pollers = running.service.pollers
    assert pollers is not None
    return bool(pollers.running) and pollers.states["leaseco"].polling


async def test_only_the_owner_polls_and_a_takeover_baseline_keeps_the_id(
    emulator: Emulator, tmp_path: Path, prefix: str
) -> None:
    await control(
        emulator,
        "api2/tenant",
        {"corpid": CORPID, "secrets": {"directory": SECRET}, "domains": [DOMAIN],
         "users": [{"userid": f"ann@{DOMAIN}"}, {"userid": f"bob@{DOMAIN}"}]},
    )  # fmt: skip
    broker = Broker(exchange=prefix, queue=prefix)
    async with contextlib.AsyncExitStack() as stack:
        consumer = await stack.enter_async_context(Consumer(broker))
        stacks = {}
        replicas = {}
        for name in ("relay-a", "relay-b"):
            stacks[name] = await stack.enter_async_context(contextlib.AsyncExitStack())
            replicas[name] = await stacks[name].enter_async_context(
                running_relay(lease_settings(emulator, tmp_path, name, prefix))
            )
        a, b = replicas["relay-a"], replicas["relay-b"]
        owner, other = await eventually(
            lambda: ("relay-a", b) if polling(a) else ("relay-b", a) if polling(b) else None,
            what="one replica polling",
        )
        await consumer.wait_for(1)
        assert not polling(other), "only the shard's owner polls"
        baseline = json.loads(consumer.messages[0].body)
        assert baseline["type"] == "exmail.directory.changed"
        # The owner goes (SIGTERM-like: a planned release); the other takes over.
        await stacks[owner].aclose()
        await eventually(lambda: polling(other), seconds=40, what="the other replica polling")
        await consumer.wait_for(2)
        again = json.loads(consumer.messages[1].body)
        # No listing in the new owner's journal: a baseline of the same listing, same id.
        assert again["id"] == baseline["id"] and again["data"] == baseline["data"]
        await control(emulator, "api2/user", {"action": "add", "userid": f"cat@{DOMAIN}"})
        await consumer.wait_for(4)
        types = [json.loads(m.body)["type"] for m in consumer.messages[2:]]
        assert types == ["exmail.directory.changed", "exmail.user.added"]
