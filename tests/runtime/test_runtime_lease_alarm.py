"""Shard leases under a real RabbitMQ resource alarm (tests/broker_alarm.py).

The alarm blocks every replica's lease connection at its next presence publish: no
confirm comes, for anybody, until it clears. Handing shards around helps nothing then,
and the broker frees nothing of a blocked connection, so the managers keep their
leases; the broker's heartbeats carry their freshness instead of the confirms. A
replica cut off from the broker *during* the alarm still gives its leases up, within
about a heartbeat, before the broker frees them (docs/leases.md, "A RabbitMQ resource
alarm"). Timings are printed (``-s``).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest

from tests.broker_alarm import ResourceAlarm
from tests.runtime.lease_support import FreezingProxy, Recorder, Watch, wait_until
from tests.runtime.test_runtime_leases import (
    BROKER,
    HEARTBEAT,
    covered,
    locked_on_broker,
    manager,
)

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(120)]

HELD = 3 * HEARTBEAT  # the alarm stays on this long once both links are blocked


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = f"exmail.relay.test-{uuid.uuid4().hex[:12]}"
    yield name
    connection = await aio_pika.connect(BROKER)
    async with connection:
        channel = await connection.channel()
        await channel.exchange_delete(f"{name}.presence")


async def test_a_resource_alarm_keeps_every_lease_and_moves_no_shard(
    prefix: str, resource_alarm: ResourceAlarm
) -> None:
    ra, rb = Recorder(), Recorder()
    a, b = manager(prefix, "replica-a", recorder=ra), manager(prefix, "replica-b", recorder=rb)
    async with Watch([a, b]) as watch, a, b:
        await wait_until(lambda: covered(a, b) and len(a.owned) == 8, 30, "an 8/8 split")
        had = {m.replica_id: m.owned for m in (a, b)}
        changes = len(ra.changes) + len(rb.changes)
        async with resource_alarm.on():
            await wait_until(
                lambda: a.link.blocked is not None and b.link.blocked is not None,
                10,
                "both lease connections to be blocked",
            )
            since = time.monotonic()
            while time.monotonic() - since < HELD:  # three heartbeats without a confirm
                for m in (a, b):
                    assert m.owned == had[m.replica_id], f"{m.replica_id} lost leases"
                    assert all(m.holds(s) for s in m.owned), f"{m.replica_id} went stale"
                    assert m.live == {"replica-a", "replica-b"}, m.live
                await asyncio.sleep(0.05)
        assert a.link.blocked is None and b.link.blocked is None
        # Confirms again: past a heartbeat after the alarm the leases still hold (fresh
        # by confirmed presence now), each hears the other, and nothing moves.
        since = time.monotonic()
        while time.monotonic() - since < HEARTBEAT + 1.0:
            for m in (a, b):
                assert m.owned == had[m.replica_id], f"{m.replica_id} lost leases after"
                assert all(m.holds(s) for s in m.owned), f"{m.replica_id} went stale after"
                assert m.live == {"replica-a", "replica-b"}, m.live
            await asyncio.sleep(0.05)
        assert len(ra.changes) + len(rb.changes) == changes, [*ra.changes, *rb.changes]
    assert watch.overlaps == [], watch.overlaps[:5]
    print(
        f"\nalarm held {HELD} s with both lease links blocked (heartbeat {HEARTBEAT} s): "
        "no lease lost, no shard moved"
    )


async def test_a_replica_cut_off_during_an_alarm_gives_up_before_the_broker_frees(
    prefix: str, resource_alarm: ResourceAlarm
) -> None:
    """The path of one replica dies while both are blocked. The broker holds a blocked
    connection's queues until the alarm clears, but the cut-off replica hears no more
    heartbeats and must stop believing within about a heartbeat; the other takes its
    shards only after the alarm, once the broker frees them."""
    proxy = FreezingProxy("127.0.0.1", 5672)
    await proxy.start()
    ra, rb = Recorder(), Recorder()
    a = manager(prefix, "replica-a", url=f"amqp://guest:guest@127.0.0.1:{proxy.port}/", recorder=ra)
    b = manager(prefix, "replica-b", recorder=rb)
    try:
        async with Watch([a, b], every=0.002) as watch, a, b:
            await wait_until(lambda: covered(a, b) and len(a.owned) == 8, 30, "an 8/8 split")
            had = a.owned
            async with resource_alarm.on():
                await wait_until(
                    lambda: a.link.blocked is not None and b.link.blocked is not None,
                    10,
                    "both lease connections to be blocked",
                )
                cut = time.monotonic()
                proxy.freeze()
                gave_up = await wait_until(lambda: not a.owned, 10, "a to give its leases up")
                assert not any(a.holds(s) for s in had)
                # The broker still holds a's blocked connection, and its leases.
                assert await locked_on_broker(prefix, min(had))
                assert b.owned.isdisjoint(had)
            cleared = time.monotonic()
            await wait_until(lambda: b.owned == set(range(16)), 30, "b to own all 16")
            first_taken = min(
                t for t, c in rb.changes if c.kind == "acquired" and c.shard in had and t > cut
            )
        assert watch.overlaps == [], watch.overlaps[:5]
    finally:
        await proxy.stop()
    assert gave_up <= HEARTBEAT + 1.0, f"a believed {gave_up:.1f} s after its path died"
    assert first_taken > cleared, "a shard moved while the alarm was on"
    print(
        f"\ncut off during an alarm (heartbeat {HEARTBEAT} s): gave its leases up "
        f"{gave_up:.2f} s after the cut; the other took the first of them "
        f"{first_taken - cleared:.2f} s after the alarm cleared"
    )
