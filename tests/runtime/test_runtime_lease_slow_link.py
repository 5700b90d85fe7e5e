"""A replica that takes many shards over a slow link (or on a busy loop) must not outlive
its own leases: the lease counts as held only until a heartbeat after the last confirmed
presence was sent, so a round of the manager stops taking shards once half of that time is
gone and publishes again at once (issue 20 item 4: 5,000 tenants over 3 replicas dropped
every lease several times during their start). Without that, the test fails: the manager
takes shards for longer than a heartbeat without a presence, gives every lease up
(``connection_lost``) and starts over."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest
from pydantic import SecretStr

from relay.runtime.leases import LeaseManager
from tests.runtime.lease_support import Recorder, wait_until
from tests.support import DEPLOYMENT_SECRET, TcpProxy

pytestmark = pytest.mark.rabbitmq

BROKER = "amqp://guest:guest@127.0.0.1:5672/"


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = f"exmail.relay.test-{uuid.uuid4().hex[:12]}"
    yield name
    connection = await aio_pika.connect(BROKER)
    async with connection:
        channel = await connection.channel()
        await channel.exchange_delete(f"{name}.presence")


async def test_many_shards_over_a_slow_link_without_losing_the_leases(prefix: str) -> None:
    proxy = TcpProxy("127.0.0.1", 5672)
    await proxy.start()
    proxy.delay = 0.1  # each chunk, each way: a round trip of 0.2 s, a lease take of 0.6 s
    recorder = Recorder()
    manager = LeaseManager(
        url=SecretStr(f"amqp://guest:guest@127.0.0.1:{proxy.port}/"),
        secrets=[SecretStr(DEPLOYMENT_SECRET)],
        replica_id="replica-a",
        shards=16,
        prefix=prefix,
        heartbeat=2,
        tick=0.6,
        on_change=recorder,
    )
    try:
        async with manager:
            took = await wait_until(
                lambda: manager.owned == set(range(16)), 90, "all 16 shards over the slow link"
            )
        print(f"\nall 16 shards over a 0.2 s round trip after {took:.1f} s")
        assert recorder.released("connection_lost") == [], "a lease outlived its presence"
        assert sorted(recorder.acquired()) == list(range(16)), "each shard taken once"
    finally:
        await proxy.stop()
