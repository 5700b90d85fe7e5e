"""Opening an AMQP connection without leaking it when the first connect fails.

``aio_pika.connect`` and ``connect_robust`` build the connection object, then await its
``connect()``; when that fails (a refused port, a bad password) they raise and leave the
object unclosed. Its ``__del__`` then schedules ``close()`` on whatever loop runs when
the garbage collector gets to it, and off a running loop that coroutine is never
awaited ("RuntimeWarning: coroutine 'RobustConnection.close' was never awaited"),
reported against whatever code runs at that moment. :func:`open_connection` does what
they do and closes the object itself on failure. Used by every AMQP connection the relay
opens: the sink, the shard leases, the checkpoint stream, ``config check --connect``.
"""

from __future__ import annotations

import contextlib
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractConnection
from aio_pika.connection import make_url

from relay.sinks.coalesce import CoalescingTCP, widen_write_queue

__all__ = ["LINK_ERRORS", "open_connection"]

#: What a broker or a dead link can throw at a client: anything else is a bug and
#: surfaces. (The lease manager and the checkpoint stream catch exactly these.)
LINK_ERRORS = (
    aiormq.exceptions.AMQPError,
    ConnectionError,
    OSError,
    TimeoutError,
    aio_pika.exceptions.ChannelInvalidStateError,
)


async def open_connection(
    url: str,
    *,
    robust: bool = False,
    within: float = 10.0,
    client_properties: dict[str, Any] | None = None,
    **options: Any,
) -> AbstractConnection:
    """``aio_pika.connect`` (or ``connect_robust``) with the same ``options`` (``heartbeat``,
    ``name``, ...), closing the connection object if its first connect fails (after
    ``within`` seconds at most)."""
    cls = aio_pika.RobustConnection if robust else aio_pika.Connection
    properties: dict[str, Any] = {"client_properties": client_properties or {}}
    connection = cls(make_url(url, **options), **properties, **options)
    if connection.url.scheme == "amqp":
        # One socket send per loop iteration, not per published message (issue 20).
        connection.kwargs["transport_factory"] = CoalescingTCP()
    try:
        await connection.connect(timeout=within)
    except BaseException:
        with contextlib.suppress(Exception):
            await connection.close()
        raise
    widen_write_queue(connection)
    return connection
