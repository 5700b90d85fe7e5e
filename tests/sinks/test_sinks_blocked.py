"""``AmqpSink`` under a real RabbitMQ resource alarm (tests/broker_alarm.py).

The broker blocks the sink's connection at its first publish during the alarm and reads
nothing more until the alarm clears. That is not a stall: the sink must keep its one
connection (earlier builds dropped it every ``confirm_timeout``, leaving each old one
on the broker, blocked, with its publishes), say why nothing is confirmed, and deliver
every publish once, at once, when the alarm clears.
"""

from __future__ import annotations

import asyncio
import logging
import time

import aio_pika
import pytest
from pydantic import SecretStr

from relay.core.delivery import Delivered, Outcome
from relay.sinks.amqp import AmqpSink
from relay.sinks.blocking import watch_blocking
from tests.broker_alarm import ResourceAlarm
from tests.sinks.conftest import delivery, queued_ids
from tests.support import AMQP_URL, eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(120)]

CONFIRM_TIMEOUT = 1.0
HELD = 4 * CONFIRM_TIMEOUT  # how long the alarm stays on once the sink is blocked


async def test_aiormq_still_has_the_handlers_the_block_watch_wraps() -> None:
    """Pins the aiormq internals relay.sinks.blocking relies on (aiormq<8)."""
    connection = await aio_pika.connect(AMQP_URL, timeout=10)
    async with connection:
        assert watch_blocking(connection, blocked=lambda _: None, unblocked=lambda: None)


async def test_a_blocked_sink_keeps_its_connection_and_delivers_each_publish_once(
    queue_name: str, resource_alarm: ResourceAlarm, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="relay.sinks.amqp")
    blocks: list[str | None] = []
    sink = AmqpSink(
        url=SecretStr(AMQP_URL),
        exchange=queue_name,
        queue=queue_name,
        queue_type="classic",
        heartbeat=2,
        confirm_timeout=CONFIRM_TIMEOUT,
    )
    sink.link.block_callbacks.append(blocks.append)
    async with sink:
        assert await sink.wait_connected(20), sink.last_error
        assert isinstance(await sink.send(delivery(0)), Delivered)
        connection = sink.link.connection
        sends: list[asyncio.Task[Outcome]] = []
        async with resource_alarm.on():
            sends += [asyncio.create_task(sink.send(delivery(n))) for n in range(1, 51)]
            await eventually(lambda: sink.blocked is not None, seconds=10, what="the block")
            assert sink.blocked == "low on disk"
            assert sink.block_status is not None
            assert sink.block_status["reason"] == "low on disk"
            blocked_at = time.monotonic()
            while time.monotonic() - blocked_at < HELD:  # four confirm timeouts
                assert sink.connected, f"the sink gave its link up: {sink.last_error}"
                assert sink.link.connection is connection, "the sink reconnected"
                assert not [t for t in sends if t.done()], [t.result() for t in sends if t.done()]
                await asyncio.sleep(0.1)
        assert resource_alarm.cleared_at is not None
        cleared = resource_alarm.cleared_at
        outcomes = await asyncio.wait_for(asyncio.gather(*sends), 10)
        took = time.monotonic() - cleared
        assert sink.blocked is None
        assert sink.link.connection is connection
    assert all(isinstance(o, Delivered) for o in outcomes), outcomes
    assert took < 3.0, f"delivery resumed {took:.1f} s after the alarm cleared"
    ids = await queued_ids(queue_name)
    assert sorted(ids) == sorted({*ids}), "a message went out twice"
    assert len(ids) == 51
    assert blocks == ["low on disk", None]
    messages = [r.getMessage() for r in caplog.records]
    assert "RabbitMQ link stalled, reconnecting" not in messages
    assert (
        messages.count("RabbitMQ blocked publishing (resource alarm); waiting, not reconnecting")
        == 1
    )
    assert messages.count("RabbitMQ unblocked publishing") == 1
    print(
        f"\nsink blocked {HELD:.0f} s: 50 publishes confirmed {took:.2f} s after the alarm cleared"
    )
