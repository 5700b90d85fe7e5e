"""End to end, in-process: an api2 tenant's directory loses most of its members between
two polls. The listing is held (relay.core.listing_guard): no event at all, the stored
listing kept, shown on /status.json, the metrics and the log; the same deletions found
on ``directory_confirm_polls`` polls in a row are committed with the ids they would
have had. A listing that comes back whole emits nothing. In lease mode a held listing is
never published as the tenant's snapshot. The real emulator, the real RabbitMQ."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from prometheus_client import CollectorRegistry

from relay.app.settings import Settings
from relay.app.wiring import Running
from relay.core.envelope import HEADER
from relay.core.events import USER_ADDED, USER_DELETED, USER_UPDATED, user_change_id
from relay.core.listing_snapshots import ListingSnapshot, newest, open_message
from relay.emulator import Emulator
from relay.ops.metrics import Metrics, PrometheusObserver
from relay.runtime.directory2 import PollState
from relay.runtime.listings import KEEP
from tests.pipeline.support import Broker, Consumer, control
from tests.support import AMQP_URL, delete_lease_names, eventually, running_relay

pytestmark = pytest.mark.rabbitmq

TENANT = "guardco"
CORPID = "wwdirguard0000001"
SECRET = "directory-guard-secret"
DOMAIN = "guard.test"
DEPLOYMENT_SECRET = "guard-test-deployment-secret-0123456789"
EVERYONE = [f"u{i:02d}@{DOMAIN}" for i in range(20)]
GONE = EVERYONE[5:]  # 15 of 20: more than 5 and more than 10 %


def tenant(emu: Emulator, **more: Any) -> dict[str, Any]:
    return {"name": TENANT, "api": "api2", "corpid": CORPID, "contact_secret": SECRET,
            "callback_token": "tok12345", "encoding_aes_key": "k" * 43,
            "api_url": emu.api2_url, "directory_interval": 1, "request_timeout": 3,
            **more}  # fmt: skip


def static_settings(emu: Emulator, broker: Broker, path: Path, **more: Any) -> Settings:
    return Settings(
        journal={"path": path},
        tenants=[tenant(emu, **more)],
        amqp=broker.amqp_settings(),
        sharding={"mode": "static"},
        http={"host": "127.0.0.1", "port": 0},
    )


def lease_settings(emu: Emulator, path: Path, prefix: str, **more: Any) -> Settings:
    return Settings(
        journal={"path": path},
        tenants=[tenant(emu, **more)],
        amqp={"enabled": True, "url": AMQP_URL, "exchange": prefix, "queue": prefix},
        sharding={"replica_id": "relay-g", "prefix": prefix, "heartbeat": 2,
                  "secret": DEPLOYMENT_SECRET},
        http={"host": "127.0.0.1", "port": 0},
        shutdown={"timeout": 3},
    )  # fmt: skip


@pytest.fixture
async def company(emulator: Emulator) -> Emulator:
    """20 members, each added as the control API adds one (so one deleted and added
    again has the same profile)."""
    await control(
        emulator,
        "api2/tenant",
        {"corpid": CORPID, "secrets": {"directory": SECRET}, "domains": [DOMAIN]},
    )
    for address in EVERYONE:
        await user(emulator, "add", address)
    return emulator


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = f"test.dirguard.{uuid.uuid4().hex[:10]}"
    yield name
    await delete_lease_names(name, listings=[TENANT])


async def user(emu: Emulator, action: str, userid: str, **fields: Any) -> None:
    if action == "add":
        fields.setdefault("name", "Same")
    await control(emu, "api2/user", {"action": action, "userid": userid, **fields})


async def lose_most_members(
    emu: Emulator, changes: Sequence[tuple[str, str, dict[str, Any]]] = ()
) -> None:
    """15 of 20 members deleted (one added, one changed) while no listing succeeds, so
    the next poll sees them all at once."""
    await control(emu, "faults", {"kind": "http_500", "count": 1000,
                                  "path": "/cgi-bin/user/list"})  # fmt: skip
    for address in GONE:
        await user(emu, "del", address)
    for action, address, fields in changes:
        await user(emu, action, address, **fields)
    await control(emu, "faults", method="DELETE")


@asynccontextmanager
async def relay(s: Settings, metrics: Metrics) -> AsyncIterator[Running]:
    async with running_relay(s, observer=PrometheusObserver(metrics)) as running:
        yield running


def state_of(running: Running) -> PollState:
    assert running.service.pollers is not None
    return running.service.pollers.states[TENANT]


def polls(metrics: Metrics) -> dict[str, float]:
    return {
        sample.labels["outcome"]: sample.value
        for metric in metrics.directory_polls.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    }


def held_gauge(metrics: Metrics) -> float | None:
    for metric in metrics.directory_held_deletions.collect():
        for sample in metric.samples:
            if sample.labels["tenant"] == TENANT:
                return sample.value
    return None


def bodies(consumer: Consumer) -> list[dict[str, Any]]:
    return [json.loads(m.body) for m in consumer.messages]


async def settle(metrics: Metrics, more: int = 3) -> None:
    start = sum(polls(metrics).values())
    await eventually(lambda: sum(polls(metrics).values()) >= start + more, what="more polls")


async def test_mass_deletions_are_held_until_the_same_listing_is_seen_three_times(
    company: Emulator, broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="relay.runtime.directory2")
    metrics = Metrics(CollectorRegistry())
    s = static_settings(company, broker, tmp_path / "j.sqlite3")  # the default guard
    async with Consumer(broker) as consumer, relay(s, metrics) as running:
        state = state_of(running)
        await consumer.wait_for(1)
        await settle(metrics, 1)
        [baseline] = bodies(consumer)
        assert baseline["data"] == {"old_ver": 0, "new_ver": baseline["data"]["new_ver"],
                                    "count": 20}  # fmt: skip
        changes = [("add", f"new@{DOMAIN}", {}), ("mod", EVERYONE[0], {"position": "Lead"})]
        await lose_most_members(company, changes=changes)

        # Held: nothing of the listing is emitted, not its addition and update either.
        read = await eventually(
            lambda: {k: polls(metrics).get(k) for k in ("held", "changed") if k in polls(metrics)},
            what="the next listing read",
        )
        assert "changed" not in read, "the deletions were committed at once"
        assert len(consumer.messages) == 1, "no event from a held listing"
        status = (await running.service.status()).to_json()
        [row] = [t for t in status["tenants"] if t["name"] == TENANT]
        directory = row["directory"]
        held = directory["held"]
        assert {k: held[k] for k in ("deleted", "added", "updated", "members", "listed")} == {
            "deleted": 15, "added": 1, "updated": 1, "members": 20, "listed": 6
        }  # fmt: skip
        assert held["polls"] in (1, 2) and held["confirm_polls"] == 3
        assert directory["last_outcome"] == "held" and directory["members"] == 20
        assert directory["failures"] == 0, "a held listing is no failed poll (no backoff)"
        assert DOMAIN not in json.dumps(directory), "counts only, no member"
        assert held_gauge(metrics) == 15
        warnings = [
            r for r in caplog.records if r.getMessage().startswith("directory listing held")
        ]
        assert warnings and warnings[0].levelno == logging.WARNING
        extra = {k: getattr(warnings[0], k) for k in ("tenant", "deleted", "members")}
        assert extra == {"tenant": TENANT, "deleted": 15, "members": 20}
        assert DOMAIN not in warnings[0].getMessage()

        # Confirmed on the third poll that finds the same deletions: committed once.
        await consumer.wait_for(1 + 1 + 17)
        await settle(metrics)
        got = bodies(consumer)[1:]
        assert len(got) == 18, [e["type"] for e in got]
        head, users = got[0], got[1:]
        assert head["type"] == "exmail.directory.changed"
        assert head["data"]["old_ver"] == baseline["data"]["new_ver"]
        assert head["data"]["count"] == 17
        deleted = sorted(e["data"]["alias"] for e in users if e["type"] == USER_DELETED)
        assert deleted == GONE
        assert {e["type"] for e in users} == {USER_ADDED, USER_UPDATED, USER_DELETED}
        for event in users:  # the ids they would have had without the guard
            data = event["data"]
            assert event["id"] == user_change_id(event["type"], TENANT, data["alias"],
                                                 data["profile"])  # fmt: skip
        assert polls(metrics)["held"] == 2 and polls(metrics)["changed"] == 1
        assert state.held is None and state.members == 6 and held_gauge(metrics) == 0
        assert any(r.getMessage() == "held directory deletions confirmed and committed"
                   for r in caplog.records)  # fmt: skip


async def test_a_listing_that_comes_back_whole_emits_nothing(
    company: Emulator, broker: Broker, tmp_path: Path
) -> None:
    """A truncated answer, then the whole directory again: the hold is dropped and no
    event is ever emitted (never confirmed by polls here: confirm_polls 0)."""
    metrics = Metrics(CollectorRegistry())
    s = static_settings(company, broker, tmp_path / "j.sqlite3", directory_confirm_polls=0)
    async with Consumer(broker) as consumer, relay(s, metrics) as running:
        state = state_of(running)
        await consumer.wait_for(1)
        await lose_most_members(company)
        await eventually(lambda: polls(metrics).get("held", 0) >= 3, what="held polls")
        assert state.held is not None and state.held.polls >= 3
        await control(company, "faults", {"kind": "http_500", "count": 1000,
                                           "path": "/cgi-bin/user/list"})  # fmt: skip
        for address in GONE:
            await user(company, "add", address)
        await control(company, "faults", method="DELETE")
        await eventually(lambda: state.held is None, what="the hold dropped")
        await settle(metrics)
        assert state.last_outcome == "unchanged" and held_gauge(metrics) == 0
        assert len(consumer.messages) == 1, "only the baseline"


async def snapshot(prefix: str) -> ListingSnapshot:
    """The newest listing snapshot on the broker, read without taking it away."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(
            f"{prefix}.listing.{TENANT}",
            durable=True,
            arguments={"x-queue-type": "classic", "x-max-length": KEEP, "x-overflow": "drop-head"},
        )
        found = []
        while (message := await queue.get(no_ack=False, fail=False)) is not None:
            assert message.headers is not None
            opened = open_message(message.body, message.headers[HEADER], tenant=TENANT,
                                  secrets=[DEPLOYMENT_SECRET.encode()])  # fmt: skip
            assert isinstance(opened, ListingSnapshot)
            found.append(opened)
        # Closed unacknowledged: the messages go back to the queue.
    best = newest(found)
    assert best is not None, "no listing snapshot"
    return best


async def test_lease_mode_never_publishes_a_held_listing(
    company: Emulator, tmp_path: Path, prefix: str
) -> None:
    """The owner holds the listing (confirm_polls 0): the broker keeps the whole one.
    Restarted with confirm_polls 2, it holds again (the count is in memory), confirms,
    commits and publishes the new listing."""
    metrics = Metrics(CollectorRegistry())
    path = tmp_path / "g.sqlite3"
    async with relay(lease_settings(company, path, prefix, directory_confirm_polls=0),
                     metrics) as running:  # fmt: skip
        state = await eventually(lambda: running.service.pollers and state_of(running),
                                 what="the poller")  # fmt: skip
        await eventually(lambda: polls(metrics).get("baseline") and state.snapshot_owed is False,
                         what="the baseline published")  # fmt: skip
        await lose_most_members(company)
        await eventually(lambda: polls(metrics).get("held", 0) >= 2, what="held polls")
        assert state.snapshot_owed is False, "nothing owed: the held listing is not committed"
    kept = await snapshot(prefix)
    assert sorted(kept.members) == EVERYONE, "the broker still has the whole listing"

    metrics = Metrics(CollectorRegistry())
    async with relay(lease_settings(company, path, prefix, directory_confirm_polls=2),
                     metrics) as running:  # fmt: skip
        state = await eventually(lambda: running.service.pollers and state_of(running),
                                 what="the poller")  # fmt: skip
        await eventually(lambda: polls(metrics).get("changed"), what="the confirmed commit")
        await eventually(lambda: state.snapshot_owed is False, what="published")
        assert polls(metrics)["held"] == 1
    kept = await snapshot(prefix)
    assert sorted(kept.members) == EVERYONE[:5]
