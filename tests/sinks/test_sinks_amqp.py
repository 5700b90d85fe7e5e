"""``AmqpSink.send`` when the real broker says no: a message no queue takes comes back
(basic.return) and one a full queue refuses is nacked (basic.nack). Both are a
``Retry`` whose row stays pending in the journal, and both heal once the condition is
gone. Every exchange and queue is named for the test and deleted afterwards."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
import pytest
from pydantic import SecretStr

from relay.core import events
from relay.core.delivery import Dead, Delivered, Delivery, DrainPolicy, Outcome, Retry, decide
from relay.core.routing import Route, Router
from relay.journal import Journal
from relay.sinks.amqp import AmqpSink
from tests.sinks.conftest import Names
from tests.support import AMQP_URL

pytestmark = pytest.mark.rabbitmq

SINK = "amqp"
POLICY = DrainPolicy(schedule=[60.0], jitter=0.0)  # one retry, a minute away


@pytest.fixture
async def sink(names: Names) -> AsyncIterator[AmqpSink]:
    """A sink on the test's exchange that declares no queue: nothing is bound yet."""
    async with AmqpSink(
        url=SecretStr(AMQP_URL), exchange=names.exchange, declare_queue=False, name=SINK
    ) as made:
        assert await made.wait_connected(20), made.last_error
        yield made


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    async with Journal(tmp_path / "journal.sqlite3") as made:
        yield made


def mail(n: int) -> events.Event:
    return events.mail_new(
        tenant="acme",
        user="bob@acme.test",
        mail_id=f"m{n}-{uuid.uuid4().hex}",
        sender="alice@example.com",
        receiver="bob@acme.test",
        subject=f"mail {n}",
        summary="hi",
        unread=n,
        now=datetime.now(UTC),
    )


async def journaled(journal: Journal, *evs: events.Event) -> list[Delivery]:
    """Append ``evs`` for the sink and claim them, as a drainer would."""
    await journal.append("acme", list(evs), route=Router((Route(SINK),)))
    return await journal.claim(SINK, limit=10)


async def attempt(journal: Journal, sink: AmqpSink, delivery: Delivery) -> Outcome:
    """One attempt and its settlement, as the drainer records it."""
    outcome = await sink.send(delivery)
    settlement = decide(POLICY, delivery, outcome, now=time.time())
    assert settlement is not None
    await journal.settle(SINK, [settlement])
    return outcome


async def pending(journal: Journal) -> list[tuple[int, int]]:
    """(seq, attempts) of every pending row of the sink, due or not."""
    return [(d.seq, d.attempts) for d in await journal.claim(SINK, limit=10, due_only=False)]


async def test_unroutable_message_is_retried_and_stays_pending(
    sink: AmqpSink, journal: Journal, names: Names, channel: aio_pika.abc.AbstractChannel
) -> None:
    [delivery] = await journaled(journal, mail(1))

    outcome = await attempt(journal, sink, delivery)

    assert type(outcome) is Retry
    assert outcome == Retry(f"unroutable: no queue bound for {delivery.routing_key!r}")
    assert await pending(journal) == [(delivery.seq, 1)]
    assert await journal.claim(SINK, limit=10) == []  # not due again for a minute
    assert sink.connected, "a returned message does not cost the connection"

    # Bind a queue: the same row now goes out and is settled as delivered.
    queue = await channel.declare_queue(names.queue, durable=True)
    await queue.bind(names.exchange, routing_key="#")
    [again] = await journal.claim(SINK, limit=10, due_only=False)
    assert await attempt(journal, sink, again) == Delivered()
    assert await pending(journal) == []
    message = await queue.get(timeout=10)
    assert message.body == delivery.body
    assert message.message_id == delivery.event_id
    await message.ack()


async def test_nacked_message_is_retried_and_stays_pending(
    sink: AmqpSink, journal: Journal, names: Names, channel: aio_pika.abc.AbstractChannel
) -> None:
    # A classic queue that holds one message and refuses more: RabbitMQ answers a
    # publish it would overflow with basic.nack.
    queue = await channel.declare_queue(
        names.queue,
        durable=True,
        arguments={"x-max-length": 1, "x-overflow": "reject-publish"},
    )
    await queue.bind(names.exchange, routing_key="#")
    first, second = await journaled(journal, mail(1), mail(2))

    assert await attempt(journal, sink, first) == Delivered()  # fills the queue
    outcome = await attempt(journal, sink, second)

    assert type(outcome) is Retry
    assert outcome == Retry("the broker refused the message (nack)")
    assert await pending(journal) == [(second.seq, 1)]
    assert sink.connected, "a nack does not cost the connection"

    # Make room: the refused row now goes out.
    taken = await queue.get(timeout=10)
    assert taken.body == first.body
    await taken.ack()
    [again] = await journal.claim(SINK, limit=10, due_only=False)
    assert again.seq == second.seq
    assert await attempt(journal, sink, again) == Delivered()
    assert await pending(journal) == []
    message = await queue.get(timeout=10)
    assert message.body == second.body
    await message.ack()


async def test_binary_mode_publishes_data_with_cloudevents_headers_and_kills_a_bad_row(
    names: Names, journal: Journal, channel: aio_pika.abc.AbstractChannel
) -> None:
    queue = await channel.declare_queue(names.queue, durable=True)
    async with AmqpSink(
        url=SecretStr(AMQP_URL), exchange=names.exchange, declare_queue=False, name=SINK,
        content_mode="binary", header_prefix="cloudEvents:",
    ) as binary_sink:  # fmt: skip
        assert await binary_sink.wait_connected(20), binary_sink.last_error
        await queue.bind(names.exchange, routing_key="#")
        event = mail(1)
        [delivery] = await journaled(journal, event)
        assert await attempt(journal, binary_sink, delivery) == Delivered()
        message = await queue.get(timeout=10)
        await message.ack()
        assert message.content_type == "application/json"
        assert json.loads(message.body) == dict(event.data)
        assert message.message_id == event.id
        assert message.headers["cloudEvents:id"] == event.id
        assert message.headers["cloudEvents:type"] == "exmail.mail.new"
        assert message.headers["cloudEvents:source"] == "exmail-relay/acme"

        # A row binary mode cannot carry (never one the relay wrote) is a dead letter
        # with a clear reason, not a retry forever.
        bad = dataclasses.replace(delivery, body=b"not json")
        outcome = await binary_sink.send(bad)
        assert outcome == Dead("cannot be sent in this content mode: the stored event is not "
                               "JSON (JSONDecodeError)")  # fmt: skip
