"""Lease mode: the api2 listing follows the shard. Owner A commits a listing and goes;
the directory changes; B takes over with an EMPTY journal and reports exactly those
changes, once, with the ids A would have given them, because it diffs against the
listing A published (docs/leases.md, "Directory polls of api2 tenants"). A forged
snapshot changes nothing; a failed read makes B wait instead of making a baseline.
In-process relays, the real RabbitMQ, the emulator."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from prometheus_client import CollectorRegistry

from relay.app.settings import Settings
from relay.app.wiring import Running
from relay.core.envelope import HEADER, sign
from relay.core.events import USER_ADDED, USER_DELETED, USER_UPDATED, user_change_id
from relay.core.listing import StoredMember
from relay.core.listing_snapshots import KIND, ListingSnapshot, encode, open_message
from relay.emulator import Emulator
from relay.ops.metrics import Metrics, PrometheusObserver
from relay.runtime.listings import KEEP
from tests.pipeline.support import Broker, Consumer, control
from tests.support import AMQP_URL, delete_lease_names, eventually, running_relay

pytestmark = pytest.mark.rabbitmq

TENANT = "takeco"
CORPID = "wwdirtakeover0001"
SECRET = "directory-takeover-secret"
DOMAIN = "take.test"
DEPLOYMENT_SECRET = "takeover-test-deployment-secret-0123456789"
ARGUMENTS: dict[str, Any] = {
    "x-queue-type": "classic",
    "x-max-length": KEEP,
    "x-overflow": "drop-head",
}


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = f"test.dirtake.{uuid.uuid4().hex[:10]}"
    yield name
    await delete_lease_names(name, listings=[TENANT])


@pytest.fixture
async def company(emulator: Emulator) -> Emulator:
    await control(
        emulator,
        "api2/tenant",
        {"corpid": CORPID, "secrets": {"directory": SECRET}, "domains": [DOMAIN],
         "users": [{"userid": f"ann@{DOMAIN}", "name": "Ann"},
                   {"userid": f"bob@{DOMAIN}", "name": "Bob"}]},
    )  # fmt: skip
    return emulator


def lease_settings(emu: Emulator, tmp_path: Path, replica: str, prefix: str) -> Settings:
    return Settings(
        journal={"path": tmp_path / f"{replica}.sqlite3"},
        tenants=[{"name": TENANT, "api": "api2", "corpid": CORPID, "contact_secret": SECRET,
                  "callback_token": "tok12345", "encoding_aes_key": "k" * 43,
                  "api_url": emu.api2_url, "directory_interval": 1}],
        amqp={"enabled": True, "url": AMQP_URL, "exchange": prefix, "queue": prefix},
        sharding={"replica_id": replica, "prefix": prefix, "heartbeat": 2,
                  "secret": DEPLOYMENT_SECRET},
        http={"host": "127.0.0.1", "port": 0},
        shutdown={"timeout": 3},
    )  # fmt: skip


@contextlib.asynccontextmanager
async def replica(
    emu: Emulator, tmp_path: Path, name: str, prefix: str, metrics: Metrics
) -> AsyncIterator[Running]:
    s = lease_settings(emu, tmp_path, name, prefix)
    async with running_relay(s, observer=PrometheusObserver(metrics)) as running:
        yield running


def polls(metrics: Metrics) -> dict[str, float]:
    found: dict[str, float] = {}
    for metric in metrics.directory_polls.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                found[sample.labels["outcome"]] = sample.value
    return found


def refused(metrics: Metrics, kind: str) -> float:
    return sum(
        sample.value
        for metric in metrics.broker_messages_refused.collect()
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels["kind"] == kind
    )


async def settle(metrics: Metrics, more: int = 3) -> None:
    start = sum(polls(metrics).values())
    await eventually(lambda: sum(polls(metrics).values()) >= start + more, what="more polls")


def bodies(consumer: Consumer) -> list[dict[str, Any]]:
    return [json.loads(m.body) for m in consumer.messages]


async def baseline_by_a(
    company: Emulator, tmp_path: Path, prefix: str, consumer: Consumer
) -> dict[str, Any]:
    """Owner A polls, commits its baseline, publishes it and goes (a planned stop)."""
    metrics = Metrics(CollectorRegistry())
    async with replica(company, tmp_path, "relay-a", prefix, metrics) as a:
        await consumer.wait_for(1)
        pollers = a.service.pollers
        assert pollers is not None
        state = pollers.states[TENANT]
        await eventually(lambda: state.snapshot_owed is False and polls(metrics).get("baseline"),
                         what="A's listing published")  # fmt: skip
        await settle(metrics, 2)
    [baseline] = bodies(consumer)
    assert baseline["type"] == "exmail.directory.changed" and baseline["data"]["old_ver"] == 0
    return baseline


async def change_directory(company: Emulator) -> None:
    """Made while nobody polls: only the listing A left can show them to B."""
    await control(company, "api2/user", {"action": "add", "userid": f"cat@{DOMAIN}", "name": "Cat"})
    await control(
        company, "api2/user", {"action": "mod", "userid": f"ann@{DOMAIN}", "name": "Anne"}
    )
    await control(company, "api2/user", {"action": "del", "userid": f"bob@{DOMAIN}"})  # fmt: skip


def assert_exactly_the_changes(got: list[dict[str, Any]], baseline: dict[str, Any]) -> None:
    assert len(got) == 4, [e["type"] for e in got]
    head, users = got[0], got[1:]
    assert head["type"] == "exmail.directory.changed"
    # Diffed against A's listing: from the fingerprint A's baseline reported.
    assert head["data"]["old_ver"] == baseline["data"]["new_ver"]
    assert head["data"]["count"] == 3
    by_type = {e["type"]: e["data"] for e in users}
    assert by_type[USER_ADDED]["alias"] == f"cat@{DOMAIN}"
    assert by_type[USER_UPDATED]["alias"] == f"ann@{DOMAIN}"
    assert by_type[USER_UPDATED]["profile"]["name"] == "Anne"
    assert by_type[USER_DELETED]["alias"] == f"bob@{DOMAIN}"
    for event in users:  # the ids A would have used: tenant, account, change, profile
        data = event["data"]
        assert event["id"] == user_change_id(event["type"], TENANT, data["alias"], data["profile"])


async def forge(prefix: str) -> None:
    """A newer snapshot signed with another secret, naming a member that never existed:
    believed, B would report zed deleted and everyone else added."""
    body = encode(
        TENANT, {f"zed@{DOMAIN}": StoredMember(f"zed@{DOMAIN}", "0" * 32)},
        at_ms=int(time.time() * 1000) + 3_600_000,
    )  # fmt: skip
    at_ms = int(time.time() * 1000)
    header = sign(KIND, body, secret=b"not-the-deployment-secret-000000", at_ms=at_ms)
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(f"{prefix}.listing.{TENANT}", durable=True, arguments=ARGUMENTS)
        await channel.default_exchange.publish(
            aio_pika.Message(body, headers={HEADER: header}),
            routing_key=f"{prefix}.listing.{TENANT}",
        )


async def test_a_takeover_with_an_empty_journal_reports_the_changes_in_between(
    company: Emulator, tmp_path: Path, prefix: str
) -> None:
    broker = Broker(exchange=prefix, queue=prefix)
    async with Consumer(broker) as consumer:
        baseline = await baseline_by_a(company, tmp_path, prefix, consumer)
        await change_directory(company)
        await forge(prefix)
        metrics = Metrics(CollectorRegistry())
        async with replica(company, tmp_path, "relay-b", prefix, metrics) as b:
            await consumer.wait_for(5)
            await settle(metrics)
            got = bodies(consumer)[1:]
            assert_exactly_the_changes(got, baseline)  # once: later polls found nothing
            assert "baseline" not in polls(metrics)
            assert refused(metrics, "listing") == 1  # the forged snapshot, counted
            pollers = b.service.pollers
            assert pollers is not None
            status = pollers.states[TENANT].to_status()
            assert status.members == 2 and status.snapshot_owed is False


async def test_a_failed_read_makes_the_new_owner_wait_instead_of_baselining(
    company: Emulator, tmp_path: Path, prefix: str
) -> None:
    broker = Broker(exchange=prefix, queue=prefix)
    queue = f"{prefix}.listing.{TENANT}"
    async with Consumer(broker) as consumer:
        baseline = await baseline_by_a(company, tmp_path, prefix, consumer)
        await change_directory(company)
        # A's snapshot taken aside; the queue declared so that B's declare fails
        # (PRECONDITION_FAILED: other arguments): every read of B fails on the broker.
        saved: list[aio_pika.abc.AbstractIncomingMessage] = []
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel()
            kept = await channel.declare_queue(queue, durable=True, arguments=ARGUMENTS)
            while (message := await kept.get(no_ack=True, fail=False)) is not None:
                saved.append(message)
            assert saved, "A published its listing"
            await channel.queue_delete(queue)
            await channel.declare_queue(queue, durable=True, arguments={"x-max-length": 1000})
        metrics = Metrics(CollectorRegistry())
        async with replica(company, tmp_path, "relay-b", prefix, metrics) as b:
            pollers = b.service.pollers
            assert pollers is not None
            state = pollers.states[TENANT]
            await eventually(lambda: polls(metrics).get("waiting", 0) >= 3, what="B waiting")
            assert state.last_error is not None
            assert state.last_error.startswith("waiting for the listing snapshot:")
            assert state.last_outcome == "waiting" and state.failures >= 3
            assert len(consumer.messages) == 1, "no baseline, no event while waiting"
            # The queue as it should be, with A's snapshot back in it: B reads it.
            connection = await aio_pika.connect(AMQP_URL)
            async with connection:
                channel = await connection.channel()
                await channel.queue_delete(queue)
                await channel.declare_queue(queue, durable=True, arguments=ARGUMENTS)
                for message in saved:
                    await channel.default_exchange.publish(
                        aio_pika.Message(message.body, headers=dict(message.headers)),
                        routing_key=queue,
                    )
            await consumer.wait_for(5)
            await settle(metrics)
            assert_exactly_the_changes(bodies(consumer)[1:], baseline)
            assert "baseline" not in polls(metrics) and state.failures == 0


async def test_a_publish_that_fails_is_owed_and_sent_after_the_next_poll(
    company: Emulator, tmp_path: Path, prefix: str
) -> None:
    queue = f"{prefix}.listing.{TENANT}"
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        metrics = Metrics(CollectorRegistry())
        async with replica(company, tmp_path, "relay-a", prefix, metrics) as a:
            pollers = a.service.pollers
            assert pollers is not None
            state = pollers.states[TENANT]
            await eventually(
                lambda: state.snapshot_owed is False and polls(metrics).get("baseline"),
                what="the baseline published",
            )
            # Declared again with other arguments: the owner's next publish fails.
            await channel.queue_delete(queue)
            await channel.declare_queue(queue, durable=True, arguments={"x-max-length": 1000})
            await control(company, "api2/user", {"action": "add", "userid": f"cat@{DOMAIN}"})
            await eventually(lambda: state.snapshot_error is not None, what="a failed publish")
            assert state.snapshot_owed is True and polls(metrics).get("changed") == 1
            assert "PRECONDITION_FAILED" in state.snapshot_error
            assert state.failures == 0, "a failed publish is no failed poll"
            await channel.queue_delete(queue)
            # The next poll (unchanged) sends the owed listing.
            await eventually(lambda: state.snapshot_owed is False, what="the owed snapshot sent")
            assert state.snapshot_error is None and polls(metrics).get("changed") == 1
        kept = await channel.declare_queue(queue, durable=True, arguments=ARGUMENTS)
        message = await kept.get(no_ack=True, fail=False)
        assert message is not None and message.headers is not None
        opened = open_message(
            message.body,
            message.headers[HEADER],
            tenant=TENANT,
            secrets=[DEPLOYMENT_SECRET.encode()],
        )
        assert isinstance(opened, ListingSnapshot)
        assert sorted(opened.members) == [f"ann@{DOMAIN}", f"bob@{DOMAIN}", f"cat@{DOMAIN}"]
