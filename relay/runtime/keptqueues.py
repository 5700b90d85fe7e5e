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

Both stores also publish the same way (a persistent message signed with the deployment
secret, :func:`signed_message`, on a queue declared with :func:`kept_arguments`, sent by
:func:`publish_kept`) and count what a read dropped the same way (:func:`note_dropped`).

A kept queue can be deleted under a running store (``rabbitmqctl delete_queue``, the
management UI). The broker still confirms a message published to it, and drops it:
there is no queue to route it to. So :func:`publish_kept` publishes ``mandatory`` and
takes only a plain confirm as stored: a message the broker returns declares the queue
again (with the same arguments) and goes again, a few times, then fails as
:class:`KeptNotRouted`, a broker error like any other for its caller. A read needs
nothing of the kind: declaring the queue it reads creates a missing one, which reads
empty, a complete read that finds nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractQueue
from pamqp.common import FieldTable
from pydantic import SecretStr

from relay.core.envelope import HEADER, sign
from relay.runtime.observer import Observer
from relay.sinks.brokerlink import BrokerLink
from relay.sinks.connect import LINK_ERRORS

__all__ = [
    "Kept",
    "KeptNotRouted",
    "KeptReadFailed",
    "bounded_read",
    "deployment_keys",
    "kept_arguments",
    "link_connection",
    "note_dropped",
    "publish_kept",
    "read_kept",
    "signed_message",
]

T = TypeVar("T")

Declare = Callable[[AbstractChannel], Awaitable[AbstractQueue]]

#: Publishes of one message before it counts as not stored: the first, and one after
#: each declare again.
ROUTE_ATTEMPTS = 3


class KeptNotRouted(aiormq.exceptions.AMQPError):
    """The broker routed a kept message to no queue, each time it was sent (the queue
    declared again in between): it is not stored. An AMQP error, so whatever handles a
    failed publish on the link (:data:`relay.sinks.connect.LINK_ERRORS`) handles it."""

    reason = "%s"


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


async def publish_kept(
    link: BrokerLink,
    channel: AbstractChannel,
    message: aio_pika.Message,
    *,
    queue: str,
    declare_again: Callable[[], Awaitable[object]],
    logger: logging.Logger,
    timeout: float | None = None,  # noqa: ASYNC109 - a bound per broker call, as op()
) -> None:
    """``message`` published to ``queue`` on ``channel`` (publisher confirms, opened
    with ``on_return_raises=True``) and confirmed as routed. Returned by the broker
    (the queue is gone, and what it kept with it): logged once, ``declare_again`` and
    publish again, up to :data:`ROUTE_ATTEMPTS` publishes, then :class:`KeptNotRouted`."""
    for attempt in range(1, ROUTE_ATTEMPTS + 1):
        try:
            confirm = await link.op(
                channel.default_exchange.publish(message, routing_key=queue, mandatory=True),
                timeout=timeout,
            )
        except aiormq.exceptions.PublishError:
            confirm = None  # Basic.Return: routed to no queue
        # Only an ack is stored: a channel without on_return_raises answers a returned
        # message with the message itself (aio-pika), which is not.
        if isinstance(confirm, aiormq.spec.Basic.Ack):
            return
        if attempt == ROUTE_ATTEMPTS:
            break
        if attempt == 1:
            logger.warning("kept queue deleted: declaring it again", extra={"queue": queue})
        await link.op(declare_again())
    raise KeptNotRouted(f"{queue}: not stored, routed to no queue {ROUTE_ATTEMPTS} times")


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
            result = await read(await link_connection(link, bound))
    except (*LINK_ERRORS, KeptReadFailed) as exc:
        link.note_error(f"cannot read {what}", exc)
        why = link.last_error or f"{what}: read failed"
        if isinstance(exc, TimeoutError) and link.connected and link.blocked is None:
            # Open but silent: the next try gets a new connection. (Not when blocked by
            # a resource alarm: a new one would be too, and the old one left behind.)
            link.lose(f"read of {what} timed out on an open connection")
        raise unavailable(why) from exc
    if link.connected:
        link.last_error = None  # a read error of before is history now
    return result


async def link_connection(link: BrokerLink, bound: float) -> AbstractConnection:
    """The link's connection once it is up (waiting up to ``bound`` seconds), or
    :class:`ConnectionError`."""
    await link.wait_connected(bound)
    connection = link.connection
    if not link.connected or connection is None:
        raise ConnectionError(f"{link.what} not open")
    return connection


def deployment_keys(secrets: Sequence[SecretStr], what: str) -> list[bytes]:
    """The non-empty deployment secrets as signing keys; none: ``ValueError``."""
    keys = [s.get_secret_value().encode() for s in secrets if s.get_secret_value()]
    if not keys:
        raise ValueError(f"{what} need the deployment secret ([sharding] secret)")
    return keys


def kept_arguments(keep: int) -> FieldTable:
    """A kept queue's arguments: the newest ``keep`` messages, with no age limit."""
    return {"x-queue-type": "classic", "x-max-length": keep, "x-overflow": "drop-head"}


def signed_message(
    kind: str, body: bytes, *, content_type: str, key: bytes, at_ms: int
) -> aio_pika.Message:
    """A persistent message of ``body``, signed as ``kind`` with ``key``."""
    return aio_pika.Message(
        body,
        content_type=content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        headers={HEADER: sign(kind, body, secret=key, at_ms=at_ms)},
    )


def note_dropped(
    observer: Observer,
    logger: logging.Logger,
    kind: str,
    *,
    where: str,
    message: str,
    extra: dict[str, object],
    reasons: list[str],
) -> str:
    """Counts the messages a read dropped, logs one line for them all, and returns what
    the status page shows (``last_refused``)."""
    for reason in reasons:
        observer.broker_message_refused(kind, reason.split(":")[0])
    logger.warning(message, extra={**extra, "count": len(reasons), "reason": reasons[0]})
    return f"{where}: {len(reasons)} message(s) dropped ({reasons[0]})"
