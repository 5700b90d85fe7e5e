"""The ``wan`` scenario's delay proxy (:mod:`bench.delay_proxy`) over real loopback
sockets: each direction is delayed by at least the configured time, and every byte
arrives, in order, with the EOF after it. Only lower bounds on time are asserted: a
busy machine may make the proxy later, never earlier.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator

import pytest

from bench.delay_proxy import DelayProxy

DELAY = 0.05  # one way


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.write_eof()
    writer.close()


@pytest.fixture
async def echo_proxy() -> AsyncIterator[DelayProxy]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with DelayProxy(port, DELAY) as proxy:
        yield proxy
    server.close()
    await server.wait_closed()


async def test_a_round_trip_takes_at_least_twice_the_one_way_delay(
    echo_proxy: DelayProxy,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", echo_proxy.port)
    for _ in range(3):  # each round trip on the open connection, not only the first
        sent = time.monotonic()
        writer.write(b"ping")
        await writer.drain()
        assert await reader.readexactly(4) == b"ping"
        assert time.monotonic() - sent >= 2 * DELAY
    writer.close()
    await writer.wait_closed()


async def test_one_way_delay_is_applied_to_each_direction() -> None:
    arrived: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(1)
        arrived.set_result(time.monotonic())
        writer.write(b"!")  # the answer's own trip back is timed by the client
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(sink, "127.0.0.1", 0)
    async with DelayProxy(server.sockets[0].getsockname()[1], DELAY) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        sent = time.monotonic()
        writer.write(b"x")
        await writer.drain()
        assert await reader.readexactly(1) == b"!"
        received = time.monotonic()
        assert await arrived - sent >= DELAY  # client -> server
        assert received - await arrived >= DELAY  # server -> client
        writer.close()
        await writer.wait_closed()
    server.close()
    await server.wait_closed()


async def test_every_byte_arrives_in_order_and_the_eof_after_it(
    echo_proxy: DelayProxy,
) -> None:
    payload = os.urandom(3 * 1024 * 1024 + 17)  # many chunks, in flight at once
    reader, writer = await asyncio.open_connection("127.0.0.1", echo_proxy.port)

    async def send() -> None:
        for start in range(0, len(payload), 10_000):  # uneven writes
            writer.write(payload[start : start + 10_000])
            await writer.drain()
        writer.write_eof()  # half-close: the echo answers the rest, then its own EOF

    sending = asyncio.create_task(send())
    echoed = await reader.read()  # up to the EOF the proxy forwarded
    await sending
    assert len(echoed) == len(payload)
    assert echoed == payload
    writer.close()
    await writer.wait_closed()


async def test_messages_written_back_to_back_come_back_whole_and_in_order(
    echo_proxy: DelayProxy,
) -> None:
    """Pipelined requests (as HTTP keep-alive and AMQP write them) keep their order."""
    reader, writer = await asyncio.open_connection("127.0.0.1", echo_proxy.port)
    messages = [f"message {i:02d};".encode() for i in range(10)]
    for message in messages:
        writer.write(message)
    await writer.drain()
    echoed = await reader.readexactly(sum(len(m) for m in messages))
    assert echoed == b"".join(messages)
    writer.close()
    await writer.wait_closed()


async def test_a_connection_the_upstream_drops_is_closed_for_the_client() -> None:
    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(1)
        writer.transport.abort()  # a reset, not a clean close

    server = await asyncio.start_server(drop, "127.0.0.1", 0)
    async with DelayProxy(server.sockets[0].getsockname()[1], DELAY) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"x")
        await writer.drain()
        try:
            rest = await reader.read()
        except ConnectionResetError:
            rest = b""
        assert rest == b""  # closed, with nothing invented
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    server.close()
    await server.wait_closed()


def test_a_negative_delay_is_refused() -> None:
    with pytest.raises(ValueError, match="delay"):
        DelayProxy(1, -0.1)
