"""The api2 listing snapshots on the real broker, when someone deletes a tenant's queue
under a running relay: a publish declares the queue again and the snapshot is stored
(readable afterwards); one that no queue takes is not stored but fails as
``ListingUnavailable`` (owed by the poller); a read of a deleted queue is a complete
read that finds nothing. The takeover itself is tested end to end in
tests/pipeline/test_pipeline_directory2_takeover.py."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractQueue
from pydantic import SecretStr

from relay.core.backoff import Backoff
from relay.core.listing import StoredMember
from relay.runtime.checkpoints import CheckpointStore
from relay.runtime.keptqueues import kept_arguments
from relay.runtime.listings import KEEP, ListingStore, ListingUnavailable
from tests.support import AMQP_URL

pytestmark = pytest.mark.rabbitmq

SECRET = SecretStr("listing-test-deployment-secret-0123456789")
TENANT = "gone"


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """Private queues per test, deleted afterwards."""
    name = f"exmail.relay.test-{uuid.uuid4().hex[:12]}"
    yield name
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(f"{name}.listing.{TENANT}")


@pytest.fixture
async def checkpoints(prefix: str) -> AsyncIterator[CheckpointStore]:
    """The checkpoint store, whose link the listing store runs on (as in the app)."""
    async with CheckpointStore(
        url=SecretStr(AMQP_URL),
        secrets=[SECRET],
        shards=1,
        prefix=prefix,
        heartbeat=2,
        reconnect_backoff=Backoff(base=0.05, cap=0.3),
    ) as store:
        assert await store.link.wait_connected(10)
        yield store


class Vanishing(ListingStore):
    """Someone deletes the tenant's queue right after the store declared it, the next
    ``deletes`` times (the window between a publish's declare and its publish)."""

    deletes = 0

    async def _declare(self, channel: AbstractChannel, tenant: str) -> AbstractQueue:
        queue = await super()._declare(channel, tenant)
        if self.deletes:
            self.deletes -= 1
            await channel.queue_delete(self.queue_of(tenant))
        return queue


def listing(store: CheckpointStore, prefix: str) -> Vanishing:
    return Vanishing(link=store.link, secrets=[SECRET], prefix=prefix, publish_timeout=5.0)


def members(*names: str) -> dict[str, StoredMember]:
    return {
        f"{n}@x.test": StoredMember(f"{n}@x.test", hashlib.sha256(n.encode()).hexdigest()[:32])
        for n in names
    }


async def delete_queue(name: str) -> None:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(name)


async def declared_as_kept(name: str) -> int:
    """The depth of ``name``, declared passively (missing: ``ChannelNotFoundEntity``),
    then with the store's own arguments (others: ``PRECONDITION_FAILED``)."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(name, passive=True)
        queue = await channel.declare_queue(name, durable=True, arguments=kept_arguments(KEEP))
        return int(queue.declaration_result.message_count or 0)


async def test_a_listing_queue_deleted_under_a_publish_is_declared_again(
    prefix: str, checkpoints: CheckpointStore
) -> None:
    store = listing(checkpoints, prefix)
    queue = store.queue_of(TENANT)
    await store.publish(TENANT, members("ann"), at=1000.0)
    # Deleted between two publishes: each publish declares the queue anyway.
    await delete_queue(queue)
    await store.publish(TENANT, members("ann", "bob"), at=1001.0)
    # Deleted between a publish's declare and its publish: the broker returns it.
    store.deletes = 1
    await store.publish(TENANT, members("ann", "bob", "cy"), at=1002.0)
    assert store.deletes == 0
    assert store.published == 3
    assert await declared_as_kept(queue) == 1, "declared again, holding the newest"
    found = await store.latest(TENANT)
    assert found is not None and set(found.members) == set(members("ann", "bob", "cy"))
    assert found.at_ms == 1_002_000
    assert checkpoints.connected


async def test_a_listing_no_queue_takes_is_not_stored(
    prefix: str, checkpoints: CheckpointStore
) -> None:
    store = listing(checkpoints, prefix)
    queue = store.queue_of(TENANT)
    await store.publish(TENANT, members("ann"), at=1000.0)
    store.deletes = 10  # faster than the store declares
    with pytest.raises(ListingUnavailable, match="routed to no queue 3 times"):
        await store.publish(TENANT, members("ann", "bob"), at=1001.0)
    assert store.published == 1
    store.deletes = 0
    # A read of the deleted queue: complete, nothing found (a new tenant's answer).
    assert await store.latest(TENANT) is None
    await store.publish(TENANT, members("ann", "bob"), at=1002.0)
    assert await declared_as_kept(queue) == 1
    found = await store.latest(TENANT)
    assert found is not None and found.at_ms == 1_002_000
