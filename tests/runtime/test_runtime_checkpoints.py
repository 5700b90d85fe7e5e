"""The checkpoint store on the real broker: what replicas publish, a new owner reads (the
newest Ver per tenant of a shard, whoever published it and in whatever order, however
long ago); forged messages (unsigned, or signed with another deployment's secret)
change nothing and are counted; a broker that goes away neither blocks nor crashes a
publisher, and a read then fails loudly instead of answering "nothing"."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractQueue
from pydantic import SecretStr

from relay.core.backoff import Backoff
from relay.core.checkpoints import KIND, encode
from relay.core.envelope import HEADER, sign
from relay.core.shards import shard_of
from relay.runtime.checkpointing import CheckpointUnavailable
from relay.runtime.checkpoints import KEEP, CheckpointStore
from relay.runtime.keptqueues import kept_arguments
from relay.runtime.observer import Observer
from tests.support import AMQP_URL, BROKER_ADDRESS, TcpProxy, eventually

PASSWORD = "guest"
SECRET = "deployment-secret-0123456789"
SHARDS = 4


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """Private queues per test, deleted afterwards."""
    name = f"exmail.relay.test-{uuid.uuid4().hex[:12]}"
    yield name
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        for shard in range(SHARDS):
            await channel.queue_delete(f"{name}.checkpoint.{shard}")


def store(
    prefix: str,
    url: str = AMQP_URL,
    secret: str = SECRET,
    kind: type[CheckpointStore] = CheckpointStore,
    **kwargs: object,
) -> CheckpointStore:
    return kind(
        url=SecretStr(url),
        secrets=[SecretStr(secret)],
        shards=SHARDS,
        prefix=prefix,
        heartbeat=2,
        reconnect_backoff=Backoff(base=0.05, cap=0.3),
        **kwargs,  # type: ignore[arg-type]
    )


def of_shard(shard: int, count: int) -> list[str]:
    """``count`` tenant names that hash into ``shard``."""
    names: list[str] = []
    i = 0
    while len(names) < count:
        if shard_of(f"tenant-{i}", SHARDS) == shard:
            names.append(f"tenant-{i}")
        i += 1
    return names


async def queue_depth(name: str) -> int:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, passive=True)
        return int(queue.declaration_result.message_count or 0)


@pytest.mark.rabbitmq
async def test_a_new_owner_reads_the_newest_ver_of_each_tenant(prefix: str) -> None:
    t1, t2, t3, t4 = of_shard(1, 4)
    async with store(prefix) as a, store(prefix) as b:
        for tenant, ver in [(t1, 1), (t2, 5), (t1, 3), (t3, 2), (t1, 2), (t2, 6)]:
            a.publish(tenant, ver)
        assert await a.flush(10)
        b.publish(t3, 7)  # a second replica
        b.publish(t1, 2)  # late and older: must not take t1 backwards
        assert await b.flush(10)
        assert a.owed == b.owed == 0
    # Both publishers are gone: a new owner reads what they left.
    async with store(prefix) as owner:
        found = await owner.latest(1, [t1, t2, t3, t4])
        assert found == {t1: 3, t2: 6, t3: 7}
        # A read hands every message back: a second read finds the same.
        assert await owner.latest(1, [t1, t2, t3, t4]) == found
        assert await owner.latest(2, of_shard(2, 3)) == {}, "a shard never written"


@pytest.mark.rabbitmq
async def test_the_newest_stays_readable_with_no_time_window(prefix: str) -> None:
    """Nothing on the broker ages out: a Ver published by a replica that is long gone is
    read back after any pause (the old stream was read from ``now - lookback`` only).
    Only the newest KEEP snapshots of a shard are kept, each holding the whole shard,
    so a tenant that stopped committing long ago is still in every one of them."""
    quiet, busy = of_shard(0, 2)
    async with store(prefix, linger=0) as gone:
        gone.publish(quiet, 4)
        assert await gone.flush(10)
        for ver in range(1, 3 * KEEP):
            gone.publish(busy, ver)
            assert await gone.flush(10)
    await asyncio.sleep(2.5)  # past what a 2 s look-back would read
    assert await queue_depth(f"{prefix}.checkpoint.0") == KEEP
    async with store(prefix) as owner:
        assert await owner.latest(0, [quiet, busy]) == {quiet: 4, busy: 3 * KEEP - 1}
        # The new owner publishes the merged snapshot at once.
        await eventually(lambda: owner.published >= 1, what="the merged snapshot")


@pytest.mark.rabbitmq
async def test_forged_checkpoints_change_no_ver_and_are_counted(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Unsigned, signed with another deployment's secret, signed for another kind, or
    signed but of another shard: none moves a tenant's Ver; each is counted."""
    (tenant,) = of_shard(3, 1)
    queue = f"{prefix}.checkpoint.3"
    refused: list[str] = []

    class Counting(Observer):
        def broker_message_refused(self, kind: str, reason: str) -> None:
            assert kind == "checkpoint"
            refused.append(reason)

    async with store(prefix, observer=Counting()) as s:
        s.publish(tenant, 5)
        assert await s.flush(10)
        forged = encode(3, {tenant: 10**9})
        now_ms = int(time.time() * 1000)
        other = b"another-deployments-secret-000"
        mine = SECRET.encode()
        headers: list[dict[str, str]] = [
            {},  # unsigned
            {HEADER: sign(KIND, forged, secret=other, at_ms=now_ms)},
            {HEADER: sign("presence", forged, secret=mine, at_ms=now_ms)},
            {HEADER: "v1,12,zz"},
        ]
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            for header in headers:
                await channel.default_exchange.publish(
                    aio_pika.Message(forged, headers=header), routing_key=queue
                )
            # Signed by us, but shard 0's snapshot in shard 3's queue: malformed.
            wrong = encode(0, {tenant: 10**9})
            await channel.default_exchange.publish(
                aio_pika.Message(
                    wrong, headers={HEADER: sign(KIND, wrong, secret=mine, at_ms=now_ms)}
                ),
                routing_key=queue,
            )
        with caplog.at_level(logging.WARNING, logger="relay.runtime.checkpoints"):
            assert await s.latest(3, [tenant]) == {tenant: 5}
        assert s.refused == 4 and s.malformed == 1
        assert sorted(refused) == [
            "bad signature",
            "bad signature",
            "malformed",
            "not a snapshot",
            "unsigned",
        ]
        assert s.last_refused is not None and "5 message(s) dropped" in s.last_refused
        logged = [r for r in caplog.records if r.getMessage() == "checkpoint messages dropped"]
        assert [r.__dict__["count"] for r in logged] == [5]  # one line per read
        assert SECRET not in caplog.text


@pytest.mark.rabbitmq
async def test_a_broker_away_neither_blocks_nor_raises_and_a_read_fails_loudly(
    prefix: str, unhandled: list[dict[str, object]]
) -> None:
    (tenant,) = of_shard(0, 1)
    proxy = TcpProxy(*BROKER_ADDRESS)
    await proxy.start()
    url = f"amqp://guest:{PASSWORD}@127.0.0.1:{proxy.port}/"
    try:
        async with store(prefix, url, confirm_timeout=2.0) as s:
            s.publish(tenant, 1)
            assert await s.flush(10)
            await proxy.stop()
            await eventually(lambda: not s.connected, what="the link to drop")
            for ver in (2, 3, 4):
                s.publish(tenant, ver)  # returns at once: nothing awaits the broker
            assert s.owed == 1
            assert await asyncio.wait_for(s.flush(0.5), 5) is False
            # Not "nothing found": a read that cannot finish says so.
            with pytest.raises(CheckpointUnavailable, match="shard 0"):
                await asyncio.wait_for(s.latest(0, [tenant], timeout=0.5), 5)
            assert s.last_error is not None
            assert PASSWORD not in s.last_error.replace("guest:***", "")
            assert ":guest@" not in s.last_error and ":guest@" not in repr(s)
            await proxy.start()
            assert await s.flush(15)
            assert s.connected and s.last_error is None
        async with store(prefix) as owner:
            assert await owner.latest(0, [tenant]) == {tenant: 4}
        assert unhandled == []
    finally:
        await proxy.stop()


@pytest.mark.rabbitmq
async def test_a_silent_link_is_replaced_and_reads_work_again(
    prefix: str, unhandled: list[dict[str, object]]
) -> None:
    """The path to the broker stalls (open, silent) and comes back: a read that times
    out drops the link, and the store connects again instead of waiting for a close
    that the client library may never report (the shard would wait for ever)."""
    (tenant,) = of_shard(0, 1)
    proxy = TcpProxy(*BROKER_ADDRESS)
    await proxy.start()
    url = f"amqp://guest:{PASSWORD}@127.0.0.1:{proxy.port}/"
    try:
        async with store(prefix, url, confirm_timeout=2.0, read_timeout=1.0) as s:
            s.publish(tenant, 3)
            assert await s.flush(10)
            proxy.stall()
            with pytest.raises(CheckpointUnavailable):
                await s.latest(0, [tenant])
            proxy.resume()

            async def reads() -> dict[str, int] | None:
                try:
                    return await s.latest(0, [tenant])
                except CheckpointUnavailable:
                    return None

            assert await eventually(reads, seconds=30, what="a read after the stall") == {tenant: 3}
            assert s.connected
        assert unhandled == []
    finally:
        await proxy.stop()


def test_a_store_without_a_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="secret"):
        CheckpointStore(url=SecretStr(AMQP_URL), secrets=[], shards=SHARDS)


async def delete_queue(name: str) -> None:
    """Someone deletes ``name`` (``rabbitmqctl delete_queue``, the management UI)."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(name)


async def declared_as_kept(name: str) -> int:
    """The depth of ``name``, declared with the store's own arguments (any other
    arguments: ``PRECONDITION_FAILED``); missing: ``ChannelNotFoundEntity``."""
    await queue_depth(name)
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, durable=True, arguments=kept_arguments(KEEP))
        return int(queue.declaration_result.message_count or 0)


@pytest.mark.rabbitmq
async def test_a_checkpoint_queue_deleted_under_a_running_store_is_declared_again(
    prefix: str, unhandled: list[dict[str, object]]
) -> None:
    """The store declares a shard's queue once per connection. Deleted meanwhile, the
    next snapshot is returned by the broker (routed nowhere): the store declares the
    queue again, as first, and sends the snapshot again, on the same connection. It
    never counts as stored what no queue took (it used to: the confirm came, the
    snapshot was gone, and a takeover read an old Ver or none)."""
    (tenant,) = of_shard(2, 1)
    queue = f"{prefix}.checkpoint.2"
    links: list[bool] = []

    class Links(Observer):
        def checkpoint_store(self, connected: bool) -> None:
            links.append(connected)

    async with store(prefix, linger=0, observer=Links()) as s:
        s.publish(tenant, 1)
        assert await s.flush(10)
        await delete_queue(queue)
        s.publish(tenant, 2)
        assert await s.flush(10)
        assert s.published == 2 and s.owed == 0
        assert await declared_as_kept(queue) == 1, "declared again, holding the newest"
        assert s.connected and links == [False, True], "on the same connection"
    async with store(prefix) as owner:
        assert await owner.latest(2, [tenant]) == {tenant: 2}
    assert unhandled == []


@pytest.mark.rabbitmq
async def test_a_deleted_checkpoint_queue_reads_as_no_checkpoint(prefix: str) -> None:
    """A takeover reading a shard whose queue is gone does not fail: it declares the
    queue and reads it empty, a complete read that finds nothing (as for a new shard)."""
    (tenant,) = of_shard(1, 1)
    async with store(prefix) as s:
        s.publish(tenant, 7)
        assert await s.flush(10)
        await delete_queue(f"{prefix}.checkpoint.1")
        assert await s.latest(1, [tenant]) == {}
        assert s.connected


class Vanishing(CheckpointStore):
    """While ``vanish``, someone deletes a shard's queue each time right after the
    store declared it (as fast as the store can declare it again)."""

    vanish = False

    async def _declare(self, channel: AbstractChannel, shard: int) -> AbstractQueue:
        queue = await super()._declare(channel, shard)
        if self.vanish:
            await channel.queue_delete(self.queue_of(shard))
        return queue


@pytest.mark.rabbitmq
async def test_a_snapshot_no_queue_takes_is_not_stored_but_owed(
    prefix: str, caplog: pytest.LogCaptureFixture, unhandled: list[dict[str, object]]
) -> None:
    """Returned again after every declare: the publish fails as a lost confirm does (the
    link is dropped, shown and logged; the Ver stays owed), never counted as stored;
    sent once a queue takes it."""
    (tenant,) = of_shard(0, 1)
    queue = f"{prefix}.checkpoint.0"
    async with store(prefix, linger=0, kind=Vanishing) as s:
        assert isinstance(s, Vanishing)
        s.publish(tenant, 1)
        assert await s.flush(10)
        s.vanish = True
        await delete_queue(queue)
        with caplog.at_level(logging.WARNING, logger="relay.runtime.checkpoints"):
            s.publish(tenant, 2)
            assert await s.flush(2) is False
        assert s.owed == 1 and s.published == 1
        lost = [r.getMessage() for r in caplog.records if "connection lost" in r.getMessage()]
        assert lost and f"{queue}: not stored, routed to no queue 3 times" in lost[0]
        gone = [r for r in caplog.records if r.getMessage().startswith("kept queue deleted")]
        assert gone and gone[0].__dict__["queue"] == queue
        s.vanish = False
        assert await s.flush(15)
        assert s.owed == 0 and s.published == 2
        assert await declared_as_kept(queue) == 1
    async with store(prefix) as owner:
        assert await owner.latest(0, [tenant]) == {tenant: 2}
    assert unhandled == []
