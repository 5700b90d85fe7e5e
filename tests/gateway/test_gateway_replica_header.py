"""``X-Relay-Replica`` (the emulator's way to tell replicas apart in its listen log) is
sent only where ``[[tenants]] replica_header = true`` says so: a lease-mode relay with
default settings never sends it to the server, one with the option does. Checked on the
emulator's own record of each listen (its ``replica`` is the header, else the peer)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import pytest

from relay.emulator import Emulator
from tests.gateway.conftest import ADMIN, control, gateway_settings
from tests.gateway.test_gateway_forwarding import tenant_of
from tests.support import AMQP_URL, eventually, running_relay

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = f"test.gwhdr.{uuid.uuid4().hex[:10]}"
    yield name
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(name)
        await channel.queue_delete(f"{name}.checkpoints")
        await channel.exchange_delete(name)
        await channel.exchange_delete(f"{name}.presence")


async def replicas_seen(
    http: aiohttp.ClientSession, emu: Emulator, replica_id: str, tmp_path: Path, prefix: str,
    **tenant: Any,
) -> set[str]:  # fmt: skip
    """Run one lease-mode relay (replica ``replica_id``) until acme listens; the
    ``replica`` the emulator recorded for its listens."""
    settings = gateway_settings(
        emu,
        tmp_path,
        journal={"path": str(tmp_path / f"{replica_id}.sqlite3"), "synchronous": "normal"},
        tenants=[
            {"name": "acme", "client_id": ADMIN, **tenant_of(emu), **tenant},
            {"name": "zeta", "client_id": "zeta@example.com", **tenant_of(emu), "enabled": False},
        ],
        amqp={"enabled": True, "url": AMQP_URL, "exchange": prefix, "queue": prefix},
        sharding={
            "replica_id": replica_id,
            "prefix": prefix,
            "shards": 2,
            "heartbeat": 2,
            "secret": "test-deployment-secret-0001",  # signs broker messages
        },
    )
    since = (await control(http, emu, "listens", method="GET"))["now"]

    async def listens() -> list[dict[str, Any]]:
        query = f"listens?company={ADMIN}&since={since}"
        return list((await control(http, emu, query, method="GET"))["listens"])

    async with running_relay(settings):
        seen = await eventually(listens, seconds=30, what=f"a listen of {replica_id}")
    return {listen["replica"] for listen in seen}


async def test_no_replica_header_by_default_and_the_replica_id_with_the_option(
    emulator: Emulator, tmp_path: Path, http: aiohttp.ClientSession, prefix: str
) -> None:
    quiet = await replicas_seen(http, emulator, "relay-quiet", tmp_path, prefix)
    assert all(r.startswith("127.0.0.1:") for r in quiet), quiet  # the peer: no header
    named = await replicas_seen(
        http, emulator, "relay-named", tmp_path, prefix, replica_header=True
    )
    assert named == {"relay-named"}
