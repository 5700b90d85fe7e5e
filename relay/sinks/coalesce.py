"""AMQP frames written in one socket send per event-loop iteration, not one per message.

Where it sits: under :func:`relay.sinks.connect.open_connection`, as the transport
factory aiormq opens its plain TCP connections with (issue 20). aiormq's writer task
hands each queued frame set (one per published message) to ``StreamWriter.write``, and
asyncio's transport tries a ``send`` at once whenever its buffer is empty: a burst of
500 publishes cost 500 syscalls, about a sixth of the relay's main thread on loopback.

:class:`CoalescingWriter` keeps what is written during one iteration of the loop and
hands it to the transport in one ``write`` at the end of that iteration (one
``call_soon``). Nothing waits longer than the iteration it was written in; ``drain``,
``write_eof`` and ``close`` flush first, so the frames leave in the order they were
written and a close never drops one. Delivery guarantees are untouched: a row counts
as delivered only on the broker's confirm, which needs the frames on the wire first.

TLS connections (``amqps://``) keep aiormq's own factory.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aio_pika.abc import AbstractConnection
from aiormq.connection import TransportFactory
from aiormq.exceptions import AMQPConnectionError
from yarl import URL

__all__ = ["WRITE_QUEUE", "CoalescingTCP", "CoalescingWriter", "widen_write_queue"]

# Frames (one set per published message) aiormq's writer queue holds before a publisher
# waits. aiormq's default is 10, which turns a burst into one hand-off per loop
# iteration: publishers queue behind the channel lock, and each write goes out in a
# send of its own. The drainer's window bounds what can be queued anyway.
WRITE_QUEUE = 4096


def widen_write_queue(connection: AbstractConnection) -> None:
    """Let ``connection``'s writer queue hold :data:`WRITE_QUEUE` frames (see there).

    aiormq sizes the queue from a class constant when the connection is built, inside
    ``aio_pika``'s connect, with no argument to pass; the queue's bound is resized in
    place, before any channel is opened on it.
    """
    underlay = connection.transport
    queue = getattr(getattr(underlay, "connection", None), "write_queue", None)
    if isinstance(queue, asyncio.Queue) and 0 < queue.maxsize < WRITE_QUEUE:
        queue._maxsize = WRITE_QUEUE  # type: ignore[attr-defined]  # asyncio.Queue's bound


class CoalescingWriter(asyncio.StreamWriter):
    """A ``StreamWriter`` whose writes within one loop iteration go out as one."""

    def __init__(
        self,
        transport: asyncio.WriteTransport,
        protocol: asyncio.StreamReaderProtocol,
        reader: asyncio.StreamReader,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        super().__init__(transport, protocol, reader, loop)
        self._call_soon = loop.call_soon
        self._held: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._held:
            self._call_soon(self.flush)
        self._held.append(bytes(data))

    def writelines(self, data: Any) -> None:
        for chunk in data:
            self.write(chunk)

    def flush(self) -> None:
        """Hand what is held to the transport now (a no-op when nothing is)."""
        if not self._held:
            return
        held, self._held = self._held, []
        if self.transport.is_closing():
            return  # the connection is gone: the publishes fail through aiormq
        self.transport.write(held[0] if len(held) == 1 else b"".join(held))

    async def drain(self) -> None:
        self.flush()
        await super().drain()

    def write_eof(self) -> None:
        self.flush()
        super().write_eof()

    def close(self) -> None:
        self.flush()
        super().close()


class CoalescingTCP(TransportFactory):
    """aiormq's plain TCP factory, with a :class:`CoalescingWriter`."""

    async def create(
        self, url: URL, **kwargs: Any
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if url.scheme == "amqps":  # not ours: aiormq's own TLS factory (the caller's choice)
            raise ValueError("CoalescingTCP is for amqp:// URLs")
        kwargs.pop("ssl_context_provider", None)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        try:
            transport, _ = await loop.create_connection(
                lambda: protocol, host=url.host or "localhost", port=url.port or 5672, **kwargs
            )
        except OSError as exc:  # what aiormq's own TCP factory raises for it
            raise AMQPConnectionError(*exc.args) from exc
        return reader, CoalescingWriter(transport, protocol, reader, loop)
