"""Checkpoints on the real broker: what replicas publish, a new owner reads (the newest
Ver per tenant, whoever published it and in whatever order); a broker that goes away
neither blocks nor crashes a publisher, and what was owed goes out when it returns;
foreign messages on the stream are skipped and counted."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest
from pydantic import SecretStr

from relay.core.backoff import Backoff
from relay.runtime.checkpoints import CheckpointObserver, CheckpointStream
from relay.runtime.observer import Observer, SinkObserver, TenantObserver
from tests.support import AMQP_URL, BROKER_ADDRESS, TcpProxy, eventually

PASSWORD = "guest"


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A private stream per test, deleted afterwards."""
    name = f"exmail.relay.test-{uuid.uuid4().hex[:12]}"
    yield name
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(f"{name}.checkpoints")


def stream(prefix: str, url: str = AMQP_URL, **kwargs: object) -> CheckpointStream:
    return CheckpointStream(
        url=SecretStr(url),
        prefix=prefix,
        heartbeat=2,
        reconnect_backoff=Backoff(base=0.05, cap=0.3),
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.rabbitmq
async def test_a_new_owner_reads_the_newest_ver_of_each_tenant(prefix: str) -> None:
    async with stream(prefix) as a, stream(prefix) as b:
        for tenant, ver in [("t1", 1), ("t2", 5), ("t1", 3), ("t3", 2), ("t1", 2), ("t2", 6)]:
            a.publish(tenant, ver)
        assert await a.flush(10)
        b.publish("t3", 7)  # a second replica
        b.publish("t1", 2)  # late and older: must not take t1 backwards
        assert await b.flush(10)
        assert a.owed == b.owed == 0
    # Both publishers are gone: a new owner reads what they left.
    async with stream(prefix) as owner:
        found = await owner.latest(["t1", "t2", "t3", "t4"])
    assert found == {"t1": 3, "t2": 6, "t3": 7}


@pytest.mark.rabbitmq
async def test_a_reader_sees_only_the_tenants_it_asks_for(prefix: str) -> None:
    async with stream(prefix) as a:
        for i in range(50):
            a.publish(f"tenant-{i}", i)
        assert await a.flush(10)
        assert await a.latest(["tenant-7", "tenant-49", "nobody"]) == {
            "tenant-7": 7,
            "tenant-49": 49,
        }
        assert await a.latest([]) == {}


@pytest.mark.rabbitmq
async def test_a_read_reaches_everything_published_before_it(prefix: str) -> None:
    """The reader stops at its own marker, not when the stream looks quiet: thousands of
    messages ahead of it are all read."""
    async with stream(prefix, batch=1) as a:
        for i in range(3000):
            a.publish(f"tenant-{i}", i)
        assert await a.flush(30)
        assert a.published == 3000
        async with stream(prefix) as owner:
            found = await owner.latest([f"tenant-{i}" for i in range(3000)], timeout=20)
    assert found == {f"tenant-{i}": i for i in range(3000)}


@pytest.mark.rabbitmq
async def test_commits_between_two_sends_coalesce_to_the_newest(prefix: str) -> None:
    s = stream(prefix, batch=10)
    for ver in range(1000):  # before the sender runs: all owed at once
        s.publish("busy", ver)
    for i in range(25):
        s.publish(f"quiet-{i}", 1)
    async with s:
        assert await s.flush(10)
        # 26 tenants, at most 10 per message: 3 messages, not 1025.
        assert s.published == 3
        assert await s.latest(["busy", "quiet-3"]) == {"busy": 999, "quiet-3": 1}


@pytest.mark.rabbitmq
async def test_the_newest_stays_readable_within_the_lookback_while_a_replica_lives(
    prefix: str,
) -> None:
    """Readers start ``lookback`` seconds back; a live publisher snapshots what it knows
    more often than that, so an old Ver stays found. One whose publisher is gone ages
    out (and the journal's checkpoint is what is left for it)."""
    lookback, every = 2.0, 0.4
    async with stream(prefix, lookback=lookback, snapshot_interval=every) as gone:
        gone.publish("orphan", 4)
        assert await gone.flush(10)
    async with stream(prefix, lookback=lookback, snapshot_interval=every) as alive:
        alive.publish("kept", 9)
        assert await alive.flush(10)
        loop = asyncio.get_running_loop()
        since = loop.time()
        await eventually(
            lambda: loop.time() - since > 2 * lookback and alive.published >= 6,
            what="the lookback to pass, with snapshots",
        )
        async with stream(prefix, lookback=lookback, snapshot_interval=every) as reader:
            assert await reader.latest(["kept", "orphan"]) == {"kept": 9}
        async with stream(prefix, lookback=None) as everything:
            assert await everything.latest(["kept", "orphan"]) == {"kept": 9, "orphan": 4}


@pytest.mark.rabbitmq
async def test_a_broker_away_neither_blocks_nor_raises_and_what_is_owed_goes_out_later(
    prefix: str, unhandled: list[dict[str, object]]
) -> None:
    proxy = TcpProxy(*BROKER_ADDRESS)
    await proxy.start()
    url = f"amqp://guest:{PASSWORD}@127.0.0.1:{proxy.port}/"
    try:
        async with stream(prefix, url, confirm_timeout=2.0) as s:
            s.publish("t", 1)
            assert await s.flush(10)
            await proxy.stop()
            await eventually(lambda: not s.connected, what="the link to drop")
            for ver in (2, 3, 4):
                s.publish("t", ver)  # returns at once: nothing awaits the broker
            assert s.owed == 1
            # Bounded by its own timeout (the outer bound only catches a hang).
            assert await asyncio.wait_for(s.flush(0.5), 5) is False
            assert await asyncio.wait_for(s.latest(["t"], timeout=0.5), 5) == {}
            await eventually(lambda: s.last_error, what="the error to show")
            assert s.last_error is not None
            assert PASSWORD not in s.last_error.replace("guest:***", "")
            assert ":guest@" not in s.last_error and ":guest@" not in repr(s)
            await proxy.start()
            assert await s.flush(15)
            assert s.connected and s.last_error is None
        async with stream(prefix) as owner:
            assert await owner.latest(["t"]) == {"t": 4}
        assert unhandled == []
    finally:
        await proxy.stop()


@pytest.mark.rabbitmq
async def test_malformed_messages_on_the_stream_are_skipped_and_counted(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with stream(prefix) as s:
        s.publish("t", 5)
        assert await s.flush(10)
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            for body in (b"garbage", b'{"vers": {"t": "99"}}', b'{"vers": {"t": -1}}', b"[]"):
                await channel.default_exchange.publish(
                    aio_pika.Message(body), routing_key=f"{prefix}.checkpoints"
                )
        s.publish("t", 6)
        assert await s.flush(10)
        with caplog.at_level(logging.WARNING, logger="relay.runtime.checkpoints"):
            assert await s.latest(["t"]) == {"t": 6}
        assert s.malformed == 4
        logged = [r for r in caplog.records if r.getMessage().startswith("malformed")]
        assert [r.__dict__["count"] for r in logged] == [4]  # one line per read


class _Recording(Observer):
    def __init__(self) -> None:
        self.seen: list[tuple[str, object]] = []

    def tenant(self, tenant: str) -> TenantObserver:
        seen = self.seen

        class _T(TenantObserver):
            def checkpoint(self, ver: int) -> None:
                seen.append((tenant, ver))

        return _T()


def test_the_observer_publishes_every_checkpoint_and_forwards_everything() -> None:
    inner = _Recording()
    s = CheckpointStream(url=SecretStr(AMQP_URL))  # not entered: publishing only books
    observer = CheckpointObserver(inner, s)
    handle = observer.tenant("acme")
    handle.checkpoint(12)
    handle.checkpoint(13)
    observer.tenant("other").checkpoint(1)
    assert inner.seen == [("acme", 12), ("acme", 13), ("other", 1)]
    assert s.owed == 2
    assert not s._book.offer("acme", 13)  # already the newest owed
    # Every report the seam has is forwarded, not silently dropped by the wrapper.
    for base, wrapper in ((TenantObserver, type(handle)), (Observer, CheckpointObserver)):
        public = {n for n in vars(base) if not n.startswith("_")}
        dropped = {n for n in public if getattr(wrapper, n) is getattr(base, n)}
        assert not dropped, dropped  # still the seam's do-nothing method
    assert isinstance(observer.sink("s"), SinkObserver)
