"""Reading a queue of kept messages whole, without taking anything out of it.

Where it sits: lease mode keeps a few signed messages per queue on the broker for the
next owner of a shard: the checkpoint snapshots (:mod:`relay.runtime.checkpoints`, a
queue per shard) and the api2 listing snapshots (:mod:`relay.runtime.listings`, a
queue per tenant). Both are read the same way, here: every message with ``basic.get``
(no ack) until the queue says empty, then every one handed back (``nack``, requeue),
on a channel of the store's :class:`relay.sinks.brokerlink.BrokerLink`, the whole read
bounded in time. A read that fails or does not finish raises: the caller waits and
tries again, it never takes a partial read for "nothing kept". A read that times out on
a link that looks open gives the link up, so the next try gets a new connection instead
of waiting for a heartbeat check that may never notice a silent path.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractQueue

from relay.core.envelope import HEADER
from relay.sinks.brokerlink import BrokerLink
from relay.sinks.connect import LINK_ERRORS

__all__ = ["Kept", "KeptReadFailed", "bounded_read", "read_kept"]

T = TypeVar("T")

Declare = Callable[[AbstractChannel], Awaitable[AbstractQueue]]


class KeptReadFailed(Exception):
    """The queue could not be read completely (the message says why: no secret)."""


@dataclass(frozen=True, slots=True)
class Kept:
    """One message read: its raw body and its signature header (unchecked)."""

    body: bytes
    header: object


async def read_kept(
    link: BrokerLink,
    connection: AbstractConnection,
    declare: Declare,
    *,
    limit: int,
    get_timeout: float,
) -> list[Kept]:
    """Every message of the queue ``declare`` declares, each handed back to it. More
    than ``limit`` messages: :class:`KeptReadFailed` (not trusted as complete)."""
    found: list[Kept] = []
    channel = await link.op(connection.channel(publisher_confirms=False))
    try:
        queue = await link.op(declare(channel))
        last = None
        for _ in range(limit):
            message = await queue.get(no_ack=False, fail=False, timeout=get_timeout)
            if message is None:
                break
            last = message
            found.append(Kept(message.body, (message.headers or {}).get(HEADER)))
        else:
            raise KeptReadFailed(f"more than {limit} messages in {queue.name}")
        if last is not None:
            await link.op(last.nack(multiple=True, requeue=True))
    finally:
        if not channel.is_closed:
            # Closing also hands back anything still unacked after a failure.
            with contextlib.suppress(*LINK_ERRORS):
                await asyncio.wait_for(channel.close(), timeout=5)
    return found


async def bounded_read(
    link: BrokerLink,
    read: Callable[[AbstractConnection], Awaitable[T]],
    *,
    bound: float,
    what: str,
    unavailable: Callable[[str], Exception],
) -> T:
    """``read`` on the link's connection within ``bound`` seconds (waiting for the link
    first), or ``unavailable(why)`` raised: the link's error, noted and shown."""
    try:
        async with asyncio.timeout(bound):
            await link.wait_connected(bound)
            connection = link.connection
            if not link.connected or connection is None:
                raise ConnectionError(f"{link.what} not open")
            result = await read(connection)
    except (*LINK_ERRORS, KeptReadFailed) as exc:
        link.note_error(f"cannot read {what}", exc)
        why = link.last_error or f"{what}: read failed"
        if isinstance(exc, TimeoutError) and link.connected:
            # Open but silent: the next try gets a new connection.
            link.lose(f"read of {what} timed out on an open connection")
        raise unavailable(why) from exc
    if link.connected:
        link.last_error = None  # a read error of before is history now
    return result
