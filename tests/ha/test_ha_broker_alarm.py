"""A RabbitMQ resource alarm under relay processes in lease mode (tests/broker_alarm.py).

Two replicas, 12 tenants, mail at a steady rate, the disk alarm of the broker on for
longer than a presence message's age limit (presence timeout + 10 s). The alarm blocks
every replica alike, so handing shards around would help nothing: no lease is given up,
no shard moves, every tenant keeps listening (mail is journaled meanwhile), readiness,
the status document, the metrics and one log line per link say why nothing is
delivered, the presence held up by the alarm is not counted as forged, and once the
alarm clears every mail is delivered once. (Before: every replica gave its leases up a
heartbeat into the alarm, nobody listened until it cleared, readiness stayed 200.)
"""

from __future__ import annotations

import asyncio
import collections
import time
from pathlib import Path

import aiohttp
import pytest

from tests.broker_alarm import ResourceAlarm
from tests.ha.support import (
    TENANTS,
    Replica,
    Traffic,
    all_delivered,
    cluster,
    delivered,
    max_gap,
)
from tests.support import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow, pytest.mark.timeout(240)]

HELD = 12.0  # seconds the alarm stays on once both replicas are blocked
BLOCKED = "RabbitMQ blocked publishing (resource alarm); waiting, not reconnecting"


async def _metrics(replica: Replica) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(replica.process.url + "metrics") as resp,
    ):
        return await resp.text()


async def _says_blocked(replica: Replica) -> bool:
    code, ready = await replica.process.get("readyz")
    why = ready.get("failing", {}).get("sink:amqp", "") if isinstance(ready, dict) else ""
    return code == 503 and why.startswith("RabbitMQ blocked publishing for ")


async def test_a_resource_alarm_moves_no_shard_and_stops_no_listen(
    tmp_path: Path, resource_alarm: ResourceAlarm
) -> None:
    async with cluster(tmp_path, replicas=2) as (group, consumer):
        owned = await group.wait_settled()
        replicas = list(group.replicas.values())
        async with Traffic(group.emu, per_second=10) as traffic:
            await eventually(lambda: len(delivered(consumer)) >= 20, seconds=60, what="mail")
            since = time.monotonic()
            async with resource_alarm.on():
                for replica in replicas:
                    await eventually(
                        lambda r=replica: _says_blocked(r), seconds=20, what="readiness: blocked"
                    )
                blocked_at = time.monotonic()
                while time.monotonic() - blocked_at < HELD:
                    assert await group.ownership() == owned, "a shard moved during the alarm"
                    await asyncio.sleep(0.5)
                for replica in replicas:
                    code, ready = await replica.process.get("readyz")
                    assert code == 503, ready
                    assert "low on disk (resource alarm)" in ready["failing"]["sink:amqp"]
                    assert set(ready["failing"]) == {"sink:amqp"}, ready  # leases: fine
                    _, doc = await replica.process.get("status.json")
                    (sink,) = doc["sinks"]
                    assert sink["connected"] is True, sink
                    assert sink["blocked"]["reason"] == "low on disk", sink
                    assert "leases" in doc["sharding"]["blocked"], doc["sharding"]
                    metrics = await _metrics(replica)
                    assert 'exmail_relay_broker_blocked{link="amqp"} 1.0' in metrics
                    assert 'exmail_relay_broker_blocked{link="leases"} 1.0' in metrics
            assert resource_alarm.cleared_at is not None
            cleared = resource_alarm.cleared_at
            await all_delivered(consumer, traffic, seconds=30)
            caught_up = time.monotonic() - cleared
            assert await group.ownership() == owned
        gaps = max_gap(group.emu, TENANTS, since=since)
        for replica in replicas:
            metrics = await _metrics(replica)
            assert 'exmail_relay_broker_blocked{link="amqp"} 0.0' in metrics
            assert 'exmail_relay_shard_releases_total{reason="connection_lost"} 0.0' in metrics
            assert '{kind="presence",reason="stale"}' not in metrics  # not counted as forged
            assert await _says_blocked(replica) is False
        lines = {r.name: [line.get("message") for line in r.process.log_lines()] for r in replicas}
    assert max(gaps.values()) < 3.0, f"a tenant stopped listening during the alarm: {gaps}"
    ids = collections.Counter(m.message_id for m in consumer.messages)
    assert [i for i, n in ids.items() if n > 1] == [], "a message went out twice"
    for name, messages in lines.items():
        assert "leases lost" not in messages, name
        assert "RabbitMQ link stalled, reconnecting" not in messages, name
        assert "presence message refused" not in messages, name
        assert 1 <= messages.count(BLOCKED) <= 3, (name, messages.count(BLOCKED))  # per link
    print(
        f"\nresource alarm {HELD:.0f} s over 2 replicas: no shard moved, longest listen gap "
        f"{max(gaps.values()):.1f} s, {len(traffic.sent)} mails, all delivered once, "
        f"{caught_up:.1f} s after the alarm cleared"
    )
