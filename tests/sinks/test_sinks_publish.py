"""The cheap AMQP publish (issue 20): the same wire bytes as aiormq's ``basic_publish``
for the same arguments, and the same answers from the real broker (confirm, return,
close); nothing left behind in the channel's bookkeeping."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import aiormq
import pytest
from aiormq import spec
from aiormq.abc import ChannelFrame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from relay.sinks.connect import open_connection
from relay.sinks.publish import WireProperties, _channel_lock, frames, publish
from tests.support import AMQP_URL

MAX = 131_064  # a channel's max_content_size with RabbitMQ's default frame_max

PROPERTIES: list[dict[str, Any]] = [
    {
        "content_type": "application/cloudevents+json",
        "message_id": "01HXYZABCDEFGHJKMNPQRSTVWX",
        "message_type": "exmail.mail.received",
        "timestamp": datetime.fromtimestamp(1_765_000_000.9999999, UTC),
        "app_id": "exmail-relay",
        "delivery_mode": 2,
    },
    {
        "content_type": "application/json",
        "headers": {"traceparent": "00-0af7651916cd43dd-b7ad6b7169203331-01", "ce_id": "é\u2603"},
        "message_id": "x",
        "delivery_mode": 2,
    },
    {
        "content_type": "text/plain",
        "content_encoding": "gzip",
        "headers": {"n": 1, "big": 2**40, "f": 1.5, "b": True, "l": [1, "a"]},
        "delivery_mode": 1,
        "priority": 9,
        "correlation_id": "c",
        "reply_to": "r",
        "expiration": "60000",
        "message_id": "m",
        "timestamp": datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
        "message_type": "t",
        "user_id": "guest",
        "app_id": "a",
    },
    {"message_id": "only", "content_type": "", "app_id": ""},  # empty means absent
]


def aiormqs_bytes(body: bytes, routing_key: str, properties: dict[str, Any]) -> bytes:
    """What aiormq's basic_publish hands its writer (its own code path, step for step)."""
    split = []
    if body:
        if len(body) < MAX:
            split = [ContentBody(body)]
        else:
            split = [ContentBody(body[i : i + MAX]) for i in range(0, len(body), MAX)]
    method = spec.Basic.Publish(exchange="ex", routing_key=routing_key, mandatory=True)
    header = ContentHeader(properties=spec.Basic.Properties(**properties), body_size=len(body))
    return ChannelFrame.marshall(frames=[method, header, *split], channel_number=7).payload


@pytest.mark.parametrize("properties", PROPERTIES)
@pytest.mark.parametrize("size", [0, 1, 900, MAX - 1, MAX, MAX + 1, 3 * MAX + 5])
def test_frames_are_the_bytes_aiormq_would_write(properties: dict[str, Any], size: int) -> None:
    body = bytes(i % 251 for i in range(size))
    for key in ("acme.mail.received", "t\u00e9nant.user.updated"):
        mine = frames(
            7,
            body,
            exchange="ex",
            routing_key=key,
            properties=WireProperties(**properties),
            max_content_size=MAX,
        )
        assert mine == aiormqs_bytes(body, key, properties)


@pytest.mark.parametrize("properties", PROPERTIES)
def test_wire_properties_marshal_as_pamqp_does(properties: dict[str, Any]) -> None:
    mine = WireProperties(**properties)
    theirs = spec.Basic.Properties(**properties)
    assert mine.marshal() == theirs.marshal()
    assert mine == theirs
    with pytest.raises(ValueError, match="delivery_mode"):
        WireProperties(delivery_mode=3)  # pamqp's validation still runs


@pytest.mark.rabbitmq
async def test_publishes_are_confirmed_returned_and_failed_as_aiormq_answers() -> None:
    queue_name = f"test.publish.{uuid.uuid4().hex[:12]}"
    connection = await open_connection(AMQP_URL)
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        queue = await channel.declare_queue(queue_name, auto_delete=False)
        raw = await channel.get_underlay_channel()
        assert isinstance(raw, aiormq.Channel)
        when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)

        # A burst: every publish confirmed, every message there, in order, intact.
        await asyncio.gather(
            *(
                publish(
                    raw,
                    f"m{i}".encode(),
                    exchange="",
                    routing_key=queue_name,
                    properties=WireProperties(
                        message_id=f"id{i}",
                        message_type="exmail.mail.received",
                        timestamp=when,
                        headers={"traceparent": f"tp{i}"},
                        delivery_mode=2,
                    ),
                )
                for i in range(500)
            )
        )
        got = []
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            got.append(message)
        assert [m.body for m in got] == [f"m{i}".encode() for i in range(500)]
        assert [m.message_id for m in got] == [f"id{i}" for i in range(500)]
        assert {m.type for m in got} == {"exmail.mail.received"}
        assert {m.timestamp for m in got} == {when}
        assert [m.headers for m in got] == [{"traceparent": f"tp{i}"} for i in range(500)]
        assert raw.confirmations == {} and raw.message_id_delivery_tag == {}

        # Unroutable (mandatory): the broker returns it, a PublishError as with aiormq.
        with pytest.raises(aiormq.exceptions.PublishError):
            await publish(
                raw,
                b"lost",
                exchange="",
                routing_key=f"{queue_name}.nobody",
                properties=WireProperties(message_id="lost"),
            )
        assert raw.message_id_delivery_tag == {}
        await queue.delete(if_unused=False, if_empty=False)

        # The connection closing under publishes that await their confirm: each one
        # fails (an AMQP error the sink answers Unavailable to), none hangs.
        pending = [
            asyncio.create_task(
                publish(
                    raw,
                    b"x",
                    exchange="",
                    routing_key=queue_name,
                    properties=WireProperties(message_id=f"late{i}"),
                )
            )
            for i in range(50)
        ]
        await asyncio.sleep(0)
        await connection.close()
        results = await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), 10)
        assert results and all(isinstance(r, aiormq.exceptions.AMQPError) for r in results)
    finally:
        await connection.close()


@pytest.mark.rabbitmq
async def test_a_publish_waits_its_turn_behind_a_held_channel_lock() -> None:
    """The shortcut (``_queue_now``) is taken only when nothing could make the publish
    wait; behind the channel lock it waits as aiormq does, and the messages still
    arrive in their delivery-tag order. A closed channel refuses it as aiormq would."""
    queue_name = f"test.publish.turn.{uuid.uuid4().hex[:12]}"
    connection = await open_connection(AMQP_URL)
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        queue = await channel.declare_queue(queue_name, auto_delete=False)
        raw = await channel.get_underlay_channel()
        assert isinstance(raw, aiormq.Channel)

        def send(i: int) -> asyncio.Task[None]:
            return asyncio.create_task(
                publish(
                    raw,
                    f"m{i}".encode(),
                    exchange="",
                    routing_key=queue_name,
                    properties=WireProperties(message_id=f"id{i}"),
                )
            )

        # The private lock the shortcut looks at is the one aiormq's Channel.lock takes.
        async with raw.lock:
            assert _channel_lock(raw).locked()
            held = send(0)
            await asyncio.sleep(0.2)
            assert not held.done() and raw.confirmations == {}, "it waited for the lock"
        first = send(1)  # the lock is free again: the shortcut
        await asyncio.wait_for(asyncio.gather(held, first), 10)
        assert not _channel_lock(raw).locked()

        got = []
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            got.append(message.body)
        assert got == [b"m0", b"m1"]
        assert raw.confirmations == {} and raw.message_id_delivery_tag == {}

        # A closed channel: the shortcut raises what channel.lock raises.
        await channel.close()
        with pytest.raises(aiormq.exceptions.ChannelInvalidStateError):
            await publish(
                raw,
                b"late",
                exchange="",
                routing_key=queue_name,
                properties=WireProperties(message_id="late"),
            )
        channel = await connection.channel()
        await channel.queue_delete(queue_name)
    finally:
        await connection.close()
