"""The coalescing AMQP transport (issue 20): frames written in one loop iteration leave in
one transport write, in order, and nothing is held back past the iteration, a drain or
a close; the relay's AMQP connections use it and a writer queue wide enough for a
burst, and a burst of publishes through it is confirmed whole by the real broker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aiormq import spec
from yarl import URL

from relay.sinks.coalesce import WRITE_QUEUE, CoalescingTCP, CoalescingWriter
from relay.sinks.connect import open_connection
from tests.support import AMQP_URL


class Received:
    """A real loopback TCP server that keeps every byte it is sent and counts reads."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(1 << 16):
            self.data += chunk
        self.closed.set()
        writer.close()


@pytest.fixture
async def server() -> AsyncIterator[tuple[Received, URL]]:
    received = Received()
    srv = await asyncio.start_server(received.handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    async with srv:
        yield received, URL(f"amqp://127.0.0.1:{port}/")


async def writer_to(url: URL) -> CoalescingWriter:
    _, writer = await CoalescingTCP().create(url)
    assert isinstance(writer, CoalescingWriter)
    return writer


async def test_writes_of_one_iteration_reach_the_transport_as_one(
    server: tuple[Received, URL],
) -> None:
    received, url = server
    writer = await writer_to(url)
    transport = writer.transport
    handed: list[bytes] = []
    real_write = transport.write

    def counting(data: bytes | bytearray | memoryview) -> None:
        handed.append(bytes(data))
        real_write(data)

    transport.write = counting  # type: ignore[method-assign]  # counts, then writes for real
    chunks = [f"frame-{i};".encode() for i in range(500)]
    for chunk in chunks:
        writer.write(chunk)
    assert handed == []  # held until the end of this iteration
    await asyncio.sleep(0)
    assert handed == [b"".join(chunks)]
    writer.write(b"tail;")
    writer.close()  # flushes first
    await writer.wait_closed()
    await asyncio.wait_for(received.closed.wait(), 5)
    assert bytes(received.data) == b"".join(chunks) + b"tail;"


async def test_drain_flushes_in_order(server: tuple[Received, URL]) -> None:
    received, url = server
    writer = await writer_to(url)
    expected = bytearray()
    for i in range(50):
        for j in range(i % 7):
            part = f"{i}.{j};".encode()
            writer.write(part)
            expected += part
        if i % 3 == 0:
            await writer.drain()
    writer.write_eof()
    await asyncio.wait_for(received.closed.wait(), 5)
    writer.close()
    assert bytes(received.data) == bytes(expected)


async def test_an_unreachable_broker_is_an_amqp_connection_error(
    server: tuple[Received, URL],
) -> None:
    _, url = server
    with pytest.raises(aio_pika.exceptions.AMQPConnectionError):
        await CoalescingTCP().create(url.with_port(1))


@pytest.mark.rabbitmq
async def test_a_burst_of_publishes_is_confirmed_whole_over_the_coalescing_link() -> None:
    queue_name = f"test.coalesce.{uuid.uuid4().hex[:12]}"
    connection = await open_connection(AMQP_URL)
    try:
        underlay = connection.transport
        assert underlay is not None
        assert underlay.connection.write_queue.maxsize == WRITE_QUEUE
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(queue_name, auto_delete=False)
        raw = await channel.get_underlay_channel()
        bodies = [f"m{i}".encode() for i in range(1000)]
        confirms = await asyncio.gather(
            *(
                raw.basic_publish(
                    body,
                    routing_key=queue_name,
                    properties=spec.Basic.Properties(message_id=body.decode()),
                    wait=False,
                )
                for body in bodies
            )
        )
        assert all(isinstance(c, spec.Basic.Ack) for c in confirms)
        got = []
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            got.append(message.body)
        assert got == bodies  # all of them, in publish order
        await queue.delete(if_unused=False, if_empty=False)
    finally:
        await connection.close()
