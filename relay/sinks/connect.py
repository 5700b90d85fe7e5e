"""Opening an AMQP connection without leaking it when the first connect fails.

``aio_pika.connect`` and ``connect_robust`` build the connection object, then await its
``connect()``; when that fails (a refused port, a bad password) they raise and leave the
object unclosed. Its ``__del__`` then schedules ``close()`` on whatever loop runs when
the garbage collector gets to it, and off a running loop that coroutine is never
awaited ("RuntimeWarning: coroutine 'RobustConnection.close' was never awaited"),
reported against whatever code runs at that moment. :func:`open_connection` does what
they do and closes the object itself on failure. Used by every AMQP connection the relay
opens: the sink, the shard leases, the checkpoint stream, ``config check --connect``.

Also here: what a broker or a dead link can throw (:data:`LINK_ERRORS`), and how to say
it (:func:`describe`): a channel the broker closed reads as the broker put it, reply code
first (``404 NOT_FOUND - no exchange 'x' in vhost '/'``).
"""

from __future__ import annotations

import contextlib
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractConnection
from aio_pika.connection import make_url

from relay.sinks.coalesce import CoalescingTCP, widen_write_queue

__all__ = ["LINK_ERRORS", "describe", "open_connection"]

#: What a broker or a dead link can throw at a client: anything else is a bug and
#: surfaces. (The lease manager and the checkpoint stream catch exactly these.)
LINK_ERRORS = (
    aiormq.exceptions.AMQPError,
    ConnectionError,
    OSError,
    TimeoutError,
    aio_pika.exceptions.ChannelInvalidStateError,
)

# aiormq raises a channel close with these codes as its own class, keeping only the text.
_CHANNEL_CODES: dict[type[Exception], int] = {
    aiormq.exceptions.ChannelAccessRefused: 403,
    aiormq.exceptions.ChannelNotFoundEntity: 404,
    aiormq.exceptions.ChannelLockedResource: 405,
    aiormq.exceptions.ChannelPreconditionFailed: 406,
}


def describe(exc: BaseException) -> str:
    """``exc`` in at most 200 characters: a channel the broker closed as the broker said
    it (reply code and text), anything else as its text (or its type's name)."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, aiormq.exceptions.ChannelClosed):
        code = _CHANNEL_CODES.get(type(exc))
        if code is not None and len(exc.args) == 1:
            text = f"{code} {exc.args[0]}"
        elif len(exc.args) == 2 and isinstance(exc.args[0], int):
            text = f"{exc.args[0]} {exc.args[1]}"  # another code: ChannelClosed(code, text)
    return text[:200]


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
