"""Checkpoints without a time window, with real processes: three ``exmail-relay run``
replicas in lease mode, 12 tenants on one emulator, the real RabbitMQ (issue 18, item 4).

Every replica goes down (an upgrade, a broker maintenance), the directory changes
meanwhile, and the replicas come back on *empty* journals (new volumes). The Vers they
committed are still on the broker, however long the outage lasted (the stream of before
was read only ``lookback`` seconds back: 2 minutes in production; with the outage
longer than that, every tenant bootstrapped in ``skip`` mode and the changes below were
never reported). So every change made during the outage is reported exactly once, and
none made before it is reported again.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.ha.support import TENANTS, cluster, delivered
from tests.pipeline.support import Consumer, control
from tests.support import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow, pytest.mark.timeout(180)]

# Longer than the look-back a test could afford to configure for the stream of before
# (its 2 s was the shortest that still saw a live replica's snapshots): nothing on the
# broker ages out now, so the length of the outage does not matter.
OUTAGE = 3.0


def user_events(consumer: Consumer) -> Counter[tuple[str, str]]:
    """How often each (type, account) of an ``exmail.user.*`` event was delivered."""
    seen: Counter[tuple[str, str]] = Counter()
    for kind in ("exmail.user.added", "exmail.user.updated", "exmail.user.deleted"):
        for doc in delivered(consumer, kind):
            seen[(kind, doc["subject"])] += 1
    return seen


async def test_every_change_made_while_every_replica_was_down_is_reported_once(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path) as (group, consumer):
        # Before the outage: one change per tenant, reported, committed, on the broker.
        before = {(f"early.{t}@{t}.test") for t in TENANTS}
        for alias in sorted(before):
            await control(group.emu, "user", {"action": "add", "alias": alias, "name": "Early"})
        await eventually(
            lambda: before <= {d["subject"] for d in delivered(consumer, "exmail.user.added")},
            seconds=30,
            what="the changes made before the outage",
        )

        replicas = list(group.replicas.values())
        for replica in replicas:
            group.terminate(replica)
        for replica in replicas:
            assert replica.process.proc is not None
            assert await asyncio.wait_for(replica.process.proc.wait(), 30) == 0
        down_at = time.monotonic()

        # During the outage: an addition, an update and a deletion in every tenant.
        during: set[tuple[str, str]] = set()
        for t in TENANTS:
            hire = f"hire.{t}@{t}.test"
            await control(group.emu, "user", {"action": "add", "alias": hire, "name": "Hire"})
            await control(
                group.emu, "user", {"action": "mod", "alias": f"user2@{t}.test", "name": "Moved"}
            )
            await control(group.emu, "user", {"action": "del", "alias": f"user3@{t}.test"})
            during |= {
                ("exmail.user.added", hire),
                ("exmail.user.updated", f"user2@{t}.test"),
                ("exmail.user.deleted", f"user3@{t}.test"),
            }
        await asyncio.sleep(max(0.0, OUTAGE - (time.monotonic() - down_at)))

        for replica in replicas:
            await group.restart(replica, empty_journal=True)
        await group.wait_settled(60)

        def reported() -> bool:
            seen = user_events(consumer)
            return all(seen[key] >= 1 for key in during)

        await eventually(reported, seconds=60, what="every change made during the outage")
        await asyncio.sleep(2.0)  # anything reported twice would have arrived by now
        seen = user_events(consumer)
        twice = {key: n for key, n in seen.items() if n > 1}
        assert not twice, f"reported more than once: {twice}"
        assert all(seen[("exmail.user.added", alias)] == 1 for alias in before)
        ids = [m.message_id for m in consumer.messages if m.type and "user." in m.type]
        assert len(ids) == len(set(ids)), "one delivery per event id"
        bootstraps = [
            d for d in delivered(consumer, "exmail.directory.changed") if d["data"]["old_ver"] == 0
        ]
        # One bootstrap per tenant: the first start; none after the outage.
        assert len(bootstraps) == len(TENANTS), bootstraps
    print(
        f"\nall 3 replicas down {OUTAGE:.0f} s, {len(during)} changes meanwhile, restarted on "
        f"empty journals: each reported once"
    )
