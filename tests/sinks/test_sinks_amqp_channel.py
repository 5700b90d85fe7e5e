"""``AmqpSink`` when the broker closes only its channel: the exchange it publishes to is
deleted under it, the next publish is refused (404 NOT_FOUND) and RabbitMQ closes the
channel, while the connection stays up.

Before, nothing watched the channel: the sink read not connected and answered every
send Unavailable, the link still counted as up and never reconnected, and the drainer
paused with backoff until the relay was restarted. Now a closed channel ends the session
as a lost connection does: every publish in flight answers Unavailable (its row stays
pending), the link reconnects with backoff and declares again. An exchange the sink
declares comes back at once; one it only checks (``exchange_passive``) is reported
missing, retried with backoff, and used again once someone declares it.
"""

from __future__ import annotations

import asyncio
import logging

import aio_pika
import pytest
from pydantic import SecretStr

from relay.core.backoff import Backoff
from relay.core.delivery import Delivered, Delivery, Outcome, Unavailable
from relay.sinks.amqp import AmqpSink
from tests.sinks.conftest import Names, queued_ids
from tests.sinks.conftest import delivery as row
from tests.support import AMQP_URL, BROKER_ADDRESS, TcpProxy, eventually

pytestmark = pytest.mark.rabbitmq

SINK = "events"


class CountingProxy(TcpProxy):
    """A :class:`TcpProxy` that counts the connections it accepts."""

    accepted = 0

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        await super()._accept(reader, writer)


def delivery(n: int) -> Delivery:
    return row(n, sink=SINK)


async def send_all(sink: AmqpSink, deliveries: list[Delivery]) -> list[Outcome]:
    """Every delivery at once (the drainer's window), each answered within a bound."""
    return await asyncio.wait_for(asyncio.gather(*map(sink.send, deliveries)), 15)


async def test_a_deleted_exchange_is_declared_again_and_delivery_resumes(
    names: Names, channel: aio_pika.abc.AbstractChannel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="relay.sinks.amqp")
    sink = AmqpSink(
        url=SecretStr(AMQP_URL),
        exchange=names.exchange,
        queue=names.queue,
        queue_type="classic",
        name=SINK,
        connect_backoff=Backoff(base=0.1, cap=0.5),
    )
    before = [delivery(n) for n in range(1, 4)]
    burst = [delivery(n) for n in range(4, 24)]
    async with sink:
        assert await sink.wait_connected(20), sink.last_error
        assert await send_all(sink, before) == [Delivered()] * len(before)

        await channel.exchange_delete(names.exchange)  # the queue stays, unbound
        # The first publish is refused and the broker closes the channel: every publish
        # in flight on it answers Unavailable, so the drainer keeps its rows pending.
        outcomes = await send_all(sink, burst)
        assert all(isinstance(o, Unavailable) for o in outcomes), outcomes

        # The link drops the connection, reconnects, declares the exchange (and binds
        # the queue) again: the sink is connected and the pending rows go out.
        await eventually(lambda: sink.connected, seconds=15, what="the sink back")
        assert sink.last_error is None
        missing = f"404 NOT_FOUND - no exchange '{names.exchange}'"
        assert any(isinstance(o, Unavailable) and missing in o.error for o in outcomes)
        assert await send_all(sink, burst) == [Delivered()] * len(burst)
        assert sink.connected

    # Nothing lost: every delivery reached the consumer's queue, each once.
    assert await queued_ids(names.queue) == [d.event_id for d in before + burst]
    warnings = [r for r in caplog.records if missing in r.getMessage()]
    assert warnings, caplog.text
    assert all(getattr(r, "sink", None) == SINK for r in warnings)
    assert f"channel of sink {SINK!r}" in warnings[0].getMessage()
    assert ":guest@" not in caplog.text  # no password, whatever the log says


async def test_a_missing_passive_exchange_is_reported_retried_and_used_once_declared(
    names: Names, channel: aio_pika.abc.AbstractChannel
) -> None:
    await channel.declare_exchange(names.exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    proxy = CountingProxy(*BROKER_ADDRESS)
    await proxy.start()
    sink = AmqpSink(
        url=SecretStr(f"amqp://guest:guest@127.0.0.1:{proxy.port}/"),
        exchange=names.exchange,
        exchange_passive=True,
        queue=names.queue,
        queue_type="classic",
        name=SINK,
        connect_backoff=Backoff(base=0.2, cap=1.0),
    )
    first, second = delivery(1), delivery(2)
    try:
        async with sink:
            assert await sink.wait_connected(20), sink.last_error
            assert await sink.send(first) == Delivered()

            await channel.exchange_delete(names.exchange)
            outcome = await asyncio.wait_for(sink.send(second), 15)
            assert isinstance(outcome, Unavailable), outcome

            # Not connected, and last_error says what is missing and why it is not made.
            await eventually(
                lambda: (
                    not sink.connected
                    and f"exchange {names.exchange!r} not found" in (sink.last_error or "")
                ),
                seconds=15,
                what="the missing exchange reported",
            )
            assert "exchange_passive" in (sink.last_error or "")
            assert "404 NOT_FOUND" in (sink.last_error or "")
            assert isinstance(await sink.send(second), Unavailable)

            # Retried with backoff, not in a hot loop: a few connections in 3 s.
            counted = proxy.accepted
            await asyncio.sleep(3.0)
            tries = proxy.accepted - counted
            assert 1 <= tries <= 15, tries
            assert not sink.connected

            # Declared again by someone else: the sink binds its queue and resumes.
            await channel.declare_exchange(
                names.exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )
            await eventually(lambda: sink.connected, seconds=15, what="the sink back")
            assert await sink.send(second) == Delivered()
    finally:
        await proxy.stop()

    assert await queued_ids(names.queue) == [first.event_id, second.event_id]
