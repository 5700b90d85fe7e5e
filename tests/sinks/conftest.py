"""What the AMQP sink tests share: a fresh exchange and queue name per test (deleted
afterwards), the test's own channel to the real broker, a delivery row, and a look at
what a queue holds."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aio_pika
import pytest

from relay.core.delivery import Delivery
from tests.support import AMQP_URL


@dataclass(frozen=True)
class Names:
    exchange: str
    queue: str


async def _delete(exchange: str, queue: str) -> None:
    connection = await aio_pika.connect(AMQP_URL, timeout=10)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(queue)
        await channel.exchange_delete(exchange)


@pytest.fixture
async def names() -> AsyncIterator[Names]:
    """An exchange and a queue name of this test's own, both deleted afterwards."""
    suffix = uuid.uuid4().hex[:12]
    made = Names(exchange=f"test.sinks.{suffix}", queue=f"test.sinks.{suffix}.q")
    yield made
    await _delete(made.exchange, made.queue)


@pytest.fixture
async def queue_name() -> AsyncIterator[str]:
    """One name for both the exchange and the queue, both deleted afterwards."""
    name = f"test.sinks.{uuid.uuid4().hex[:12]}"
    yield name
    await _delete(name, name)


@pytest.fixture
async def channel() -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    """The test's own channel (declare, bind, delete, read beside the sink's)."""
    connection = await aio_pika.connect(AMQP_URL, timeout=10)
    async with connection:
        yield await connection.channel()


def delivery(n: int, *, sink: str = "amqp") -> Delivery:
    """The ``n``-th delivery of a burst: a unique event id, a small JSON body."""
    return Delivery(
        sink=sink,
        seq=n,
        event_id=f"ev-{n}-{uuid.uuid4().hex}",
        tenant="acme",
        type="exmail.mail.new",
        routing_key="acme.mail.new",
        body=json.dumps({"specversion": "1.0", "n": n}).encode(),
        created=time.time(),
        attempts=0,
    )


async def queued_ids(queue_name: str) -> list[str]:
    """The message ids in ``queue_name``, every copy, in order (read and acknowledged)."""
    found: list[str] = []
    connection = await aio_pika.connect(AMQP_URL, timeout=10)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(queue_name)
        while (message := await queue.get(fail=False, timeout=5)) is not None:
            assert message.message_id is not None
            found.append(message.message_id)
            await message.ack()
    return found
