"""Health releases leases, with processes: a replica that cannot do an owner's work lets
its shards go to the others and rejoins once it can (issue 18, item 6).

- a real full tmpfs under the journal of one of three replicas: after ``release_after``
  its shards go (reason ``unhealthy``: status, readiness, metrics, log), the others run
  its tenants, it takes none while the disk is full, every mail sent meanwhile is
  delivered, and once room is made it takes its share again;
- the same for the delivery link: the replica's AMQP sink reaches the broker through a
  proxy of its own that is then closed (its lease connection stays up).

Each test prints what it measured (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from pathlib import Path

import aiohttp
import pytest

from tests.chaos.support import small_disk
from tests.ha.support import (
    SHARDS,
    Cluster,
    Replica,
    Traffic,
    admin,
    all_delivered,
    cluster,
    delivered,
    tenants_of,
)
from tests.pipeline.support import Consumer
from tests.support import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow, pytest.mark.timeout(240)]

RELEASE_AFTER = 3


async def flowing(consumer: Consumer, traffic: Traffic) -> None:
    sent = len(traffic.sent)
    await eventually(
        lambda: len(traffic.sent) >= sent + 20 and len(delivered(consumer)) >= sent,
        seconds=60,
        what="mail to flow",
    )


async def _unhealthy(replica: Replica) -> dict[str, object] | None:
    """The replica's status while it says it is unhealthy and owns nothing."""
    code, doc = await replica.process.get("status.json")
    if code != 200 or not doc["sharding"].get("unhealthy") or doc["sharding"]["owned"]:
        return None
    return dict(doc["sharding"])


async def _others_run_everything(group: Cluster, sick: Replica) -> bool:
    """Every shard held by a replica other than ``sick``, and each of their tenants
    listened to by its holder."""
    ownership = await group.ownership()
    if any(o is None for o in ownership.values()):
        return False
    held = {s: n for n, o in ownership.items() if o and n != sick.name for s in o}
    if sorted(held) != list(range(SHARDS)):
        return False
    listening = group.listening()
    return all(
        listening.get(admin(t)) == {name}
        for name in {n for n in ownership if n != sick.name}
        for t in tenants_of(ownership[name] or set())
    )


async def _metrics(replica: Replica) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(replica.process.url + "metrics") as resp,
    ):
        return await resp.text()


async def _stays_out(replica: Replica, seconds: float) -> None:
    """``replica`` takes no shard for ``seconds`` (sampled every 0.25 s)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert await replica.owned() == set(), f"{replica.name} took a shard while unhealthy"
        await asyncio.sleep(0.25)


async def test_a_full_journal_hands_the_shards_over_and_rejoins_once_room_is_made(
    tmp_path: Path,
) -> None:
    with small_disk(tmp_path / "disk") as disk:
        async with cluster(tmp_path, replicas=2, sharding=f"release_after = {RELEASE_AFTER}") as (
            group,
            consumer,
        ):
            sick = await group.add("r3", journal=disk.path / "journal.sqlite3")
            owned = await eventually(
                lambda: group.settled_with(sick), seconds=60, what="r3 to take its share"
            )
            moved = tenants_of(owned["r3"])
            async with Traffic(group.emu) as traffic:
                await flowing(consumer, traffic)
                filled_at = time.monotonic()
                assert disk.fill() > 0
                status = await eventually(
                    lambda: _unhealthy(sick), seconds=60, what="r3 to say it is unhealthy"
                )
                released_at = time.monotonic()
                await eventually(
                    lambda: _others_run_everything(group, sick),
                    seconds=60,
                    what=f"{sorted(moved)} running on r1 and r2",
                )
                moved_at = time.monotonic()
                code, ready = await sick.process.get("readyz")
                assert code == 503, ready
                assert ready["failing"]["leases"].startswith("unhealthy"), ready
                assert "journal" in str(status["unhealthy"]), status
                metrics = await _metrics(sick)
                assert 'exmail_relay_shard_releases_total{reason="unhealthy"}' in metrics
                assert "exmail_relay_lease_unhealthy 1.0" in metrics
                await _stays_out(sick, 3.0)  # the disk is still full: it takes nothing
                await flowing(consumer, traffic)
                disk.make_room()
                room_at = time.monotonic()
                await eventually(
                    lambda: group.settled_with(sick),
                    seconds=60,
                    what="r3 to take its share again",
                )
                rejoined_at = time.monotonic()
                await flowing(consumer, traffic)
            await all_delivered(consumer, traffic)
            lines = [line.get("message") for line in sick.process.log_lines()]
    assert "replica unhealthy; releasing every shard and taking none" in lines
    assert "replica healthy again; rejoining" in lines
    print(
        f"\nfull journal under r3 ({len(moved)} tenants): unhealthy and released "
        f"{released_at - filled_at:.1f} s after the fill (release_after {RELEASE_AFTER} s); "
        f"its tenants on r1/r2 {moved_at - filled_at:.1f} s after the fill; back with its "
        f"share {rejoined_at - room_at:.1f} s after room was made; {len(traffic.sent)} "
        "mails, all delivered"
    )


def _rabbitmqctl(*args: str) -> str:
    done = subprocess.run(
        ["rabbitmqctl", *args], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, f"rabbitmqctl {args[0]} failed: {done.stderr}"
    return done.stdout


def _close_sink_connections(user: str) -> int:
    """Close ``user``'s delivery connections (the AMQP sink's: ``app_id`` exmail-relay),
    leaving its lease and checkpoint connections alone; how many were closed."""
    closed = 0
    listing = _rabbitmqctl("list_connections", "-q", "--no-table-headers", "pid", "user",
                           "client_properties")  # fmt: skip
    for line in listing.splitlines():
        name, _, rest = line.partition("\t")
        owner, _, properties = rest.partition("\t")
        if owner == user and '{"app_id","exmail-relay"}' in properties:
            _rabbitmqctl("close_connection", name, "test: the delivery link goes away")
            closed += 1
    return closed


async def test_a_delivery_link_down_for_release_after_hands_the_shards_over(
    tmp_path: Path,
) -> None:
    """r3 reaches the broker as a user of its own. Its password is changed (open
    connections stay, new ones are refused) and its AMQP sink's connection is closed:
    the sink cannot come back, while its lease connection stays up. It releases its
    shards (``unhealthy``: delivery link), and rejoins once the password is back."""
    user = f"test.ha.{uuid.uuid4().hex[:10]}"
    password = uuid.uuid4().hex
    _rabbitmqctl("add_user", user, password)
    try:
        _rabbitmqctl("set_permissions", "-p", "/", user, ".*", ".*", ".*")
        async with cluster(tmp_path, replicas=2, sharding=f"release_after = {RELEASE_AFTER}") as (
            group,
            consumer,
        ):
            cut = await group.add("r3", url=f"amqp://{user}:{password}@127.0.0.1:5672/")
            owned = await eventually(
                lambda: group.settled_with(cut), seconds=60, what="r3 to take its share"
            )
            moved = tenants_of(owned["r3"])
            async with Traffic(group.emu) as traffic:
                await flowing(consumer, traffic)
                _rabbitmqctl("change_password", user, uuid.uuid4().hex)
                cut_at = time.monotonic()
                assert _close_sink_connections(user) == 1
                status = await eventually(
                    lambda: _unhealthy(cut), seconds=60, what="r3 to say it is unhealthy"
                )
                released_at = time.monotonic()
                assert "delivery link" in str(status["unhealthy"]), status
                await eventually(
                    lambda: _others_run_everything(group, cut),
                    seconds=60,
                    what=f"{sorted(moved)} running on r1 and r2",
                )
                await _stays_out(cut, 3.0)
                assert cut.process.alive
                _rabbitmqctl("change_password", user, password)
                healed_at = time.monotonic()
                await eventually(
                    lambda: group.settled_with(cut), seconds=60, what="r3 back with its share"
                )
                rejoined_at = time.monotonic()
                await flowing(consumer, traffic)
            await all_delivered(consumer, traffic)
    finally:
        _rabbitmqctl("delete_user", user)
    print(
        f"\ndelivery link of r3 down ({len(moved)} tenants): released "
        f"{released_at - cut_at:.1f} s after the cut (release_after {RELEASE_AFTER} s); "
        f"back with its share {rejoined_at - healed_at:.1f} s after the password returned; "
        f"{len(traffic.sent)} mails, all delivered"
    )
