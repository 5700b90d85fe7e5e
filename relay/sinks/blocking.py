"""RabbitMQ's ``connection.blocked``: what a resource alarm does to a connection, and
where the relay hears of it.

Where it sits: :class:`relay.sinks.brokerlink.BrokerLink` calls :func:`watch_blocking`
on every connection it opens, and reads :func:`last_heard` while one is blocked. Every
link of the relay (the AMQP sink, the shard leases, the checkpoint and listing store)
goes through there.

What a resource alarm is, as measured on the real broker (RabbitMQ 3.x, ``rabbitmqctl
set_disk_free_limit`` above the free space; a memory alarm is the same):

- The broker *blocks* every connection that publishes: after its first publish it reads
  nothing more from the socket, no publish, no declare, no ``channel.open``, not even
  our heartbeats, until the alarm clears. It sends ``connection.blocked`` (reason
  ``low on disk`` or ``low on memory``) to clients that advertise the capability
  (aiormq does), and ``connection.unblocked`` when the alarm clears. A connection that
  never publishes stays usable ("blocking" in ``rabbitmqctl list_connections``).
- It keeps sending: its heartbeats (every half heartbeat), deliveries to consumers.
- It frees nothing of a blocked connection: it does not watch its heartbeats while it
  is blocked, and a client that closes it, or goes silent, is noticed only once the
  alarm clears (the connection stays listed as ``blocked``, its exclusive queues held).
  After the alarm it frees a silent one's queues about 3 heartbeats later.
- Once the alarm clears, what was published is read and confirmed, in order.

So a blocked link is not a broken one. Dropping it helps nothing: the next connection
is blocked at its first publish, and the old one stays on the broker, unclosed, with
its publishes, which go out when the alarm clears (copies of what is sent again).

aiormq handles both frames (its ``ready()`` waits while blocked) but says nothing to
its user beyond a log line. :func:`watch_blocking` wraps its two handlers on the one
connection object (aiormq's private names, pinned by ``aiormq<8`` in pyproject.toml and
by ``tests/sinks/test_sinks_blocked.py`` against the real broker) and replaces aiormq's
log lines with the link's own, once per block.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aio_pika.abc import AbstractConnection

__all__ = ["blocked_text", "last_heard", "watch_blocking"]

# aiormq.Connection's handlers and clock, name-mangled (``self.__handle_...``).
_ON_BLOCKED = "_Connection__handle_connection_blocked"
_ON_UNBLOCKED = "_Connection__handle_connection_unblocked"
_LAST_FRAME = "_Connection__last_frame_time"

# aiormq's own lines for the two frames: the link logs what the block means instead.
_AIORMQ_LINES = frozenset({"Connection %r was blocked by: %r", "Connection %r was unblocked"})


class _WithoutBlockLines(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg not in _AIORMQ_LINES


_filter = _WithoutBlockLines()


def _underlay(connection: AbstractConnection) -> Any:
    """aio-pika's connection's aiormq connection (``None`` before it is open)."""
    return getattr(getattr(connection, "transport", None), "connection", None)


def watch_blocking(
    connection: AbstractConnection,
    *,
    blocked: Callable[[str], None],
    unblocked: Callable[[], None],
) -> bool:
    """Call ``blocked(reason)`` when the broker blocks ``connection``, ``unblocked()``
    when it lets it go again (both run in aiormq's frame reader: they must not raise).
    False when this aiormq has no such handlers: nothing is reported then."""
    underlay = _underlay(connection)
    on_blocked: Callable[[Any], Awaitable[None]] | None = getattr(underlay, _ON_BLOCKED, None)
    on_unblocked: Callable[[Any], Awaitable[None]] | None = getattr(underlay, _ON_UNBLOCKED, None)
    if on_blocked is None or on_unblocked is None:
        return False

    async def block(frame: Any) -> None:
        await on_blocked(frame)  # aiormq's bookkeeping first: its ready() waits now
        blocked(str(getattr(frame, "reason", "") or "no reason given"))

    async def unblock(frame: Any) -> None:
        await on_unblocked(frame)
        unblocked()

    setattr(underlay, _ON_BLOCKED, block)
    setattr(underlay, _ON_UNBLOCKED, unblock)
    aiormq_log = logging.getLogger("aiormq.connection")
    if _filter not in aiormq_log.filters:
        aiormq_log.addFilter(_filter)
    return True


def blocked_text(reason: str, seconds: float | None = None) -> str:
    """What to say about a block with the broker's ``reason`` (``low on disk``), on for
    ``seconds``: ``RabbitMQ blocked publishing for 12 s: low on disk (resource alarm)``."""
    held = "" if seconds is None else f" for {seconds:.0f} s"
    return f"RabbitMQ blocked publishing{held}: {reason} (resource alarm)"


def last_heard(connection: AbstractConnection | None) -> float | None:
    """Loop time at which the last frame from the broker arrived on ``connection``
    (``None``: unknown). A blocked connection still hears the broker's heartbeats."""
    value = getattr(_underlay(connection), _LAST_FRAME, None) if connection else None
    return value if isinstance(value, float) else None
