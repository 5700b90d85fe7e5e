"""The AMQP sink: publishes journaled events to RabbitMQ with aio-pika.

Every event is a persistent message on a durable topic exchange, routing key
``<tenant>.<type minus "exmail.">``, in CloudEvents structured mode or, with
``content_mode="binary"``, in binary mode (the message itself is built by the pure
:func:`relay.core.amqp_message.amqp_message`). A row counts as delivered
only after the broker's publisher confirm. Publishing is mandatory, so a message no
queue would take comes back and counts as a failure (retried), not as a success.

Many publishes are in flight at once (the drainer's window), each awaiting its own
confirm: throughput is bounded by the broker, not by round trips.

The connection is a :class:`~relay.sinks.brokerlink.BrokerLink`: it connects, declares
the exchange (and queue), and after any loss reconnects and declares again, with capped,
jittered backoff, the first connect included. While disconnected, :meth:`AmqpSink.send`
answers :class:`~relay.sinks.Unavailable` and the drainer pauses: events wait in the
journal and go out in order when the broker returns. With tracing on, the attempt's
W3C ``traceparent`` (and ``tracestate``) are application headers of the message.

The broker may close the sink's channel alone, the connection staying up: a publish to
an exchange deleted under the sink is refused (``404 NOT_FOUND``) and the channel is
closed. The link watches the channel (:meth:`~relay.sinks.brokerlink.BrokerLink.watch`):
the session ends as for a lost connection, every publish in flight on it answers
Unavailable, and the next session declares the exchange again (or, with
``exchange_passive``, says it is missing and is retried with backoff).

A *stalled* link (packets dropped, nothing refused) must show too, and fast. Two
guards, both sized so that readiness fails well within 30 s with the defaults:

- AMQP heartbeats (``heartbeat`` seconds, negotiated with the broker): with no frame
  from the broker for ``(heartbeat + 1) * 3`` s, aiormq drops the connection and the
  link reconnects. This covers an idle link.
- An age limit on unconfirmed publishes (``confirm_timeout``): one watchdog task, not a
  timer per message, looks at the oldest publish still awaiting its confirm; past the
  limit the link counts as stalled. The sink then reports itself not connected
  (``publish not confirmed within N s``), drops the connection so the link reconnects,
  and every publish awaiting a confirm answers :class:`~relay.sinks.Unavailable`: the
  rows stay pending and are published again after the reconnect (at-least-once: the
  broker may have had some of them).

A resource alarm (disk or memory low) *blocks* the link instead
(:mod:`relay.sinks.blocking`): the broker reads nothing and confirms nothing until the
alarm clears, and says so. That is not a stall: the watchdog does not count the time a
block lasts (each publish's age starts again at the unblock), nothing is dropped or sent
again, and the sink stays connected with ``blocked`` set (the broker's reason, for
readiness, the status page and ``exmail_relay_broker_blocked``). The publishes in flight
wait on the connection, the drainer's window bounds them, the rest wait in the journal;
once the alarm clears they are confirmed in order, at once. (Earlier builds took the
block for a stall: a reconnect every ``confirm_timeout``, each old connection left on the
broker, blocked, with its publishes, until the alarm cleared.)

Every publish belongs to the session it started on. When a session ends (lost, dropped
or closed), each of its publishes still in flight answers Unavailable, whatever it was
waiting for: aiormq rejects the confirms a closed connection owes, but not a publisher
waiting for room in its writer queue (holding the channel lock, every later publish
behind it), which would otherwise wait forever. The watchdog looks only at the current
session's publishes: nothing left over from an ended session drops a new one.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
from datetime import UTC, datetime
from typing import Any, Literal

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange
from pamqp.common import FieldTable
from pydantic import SecretStr

from relay.core.amqp_message import ContentMode, HeaderPrefix, MessageError, amqp_message
from relay.core.backoff import Backoff
from relay.core.delivery import Dead, Delivered, Delivery, Outcome, Retry, Unavailable
from relay.sinks.brokerlink import BrokerLink, LinkLost, wait_until
from relay.sinks.connect import describe
from relay.sinks.publish import WireProperties, publish

__all__ = ["AmqpSink"]

log = logging.getLogger("relay.sinks.amqp")

APP_ID = "exmail-relay"
PERSISTENT = int(aio_pika.DeliveryMode.PERSISTENT)


class AmqpSink:
    """Publishes to RabbitMQ. Use as an async context manager; it owns its link."""

    def __init__(
        self,
        *,
        url: SecretStr,
        exchange: str = "exmail.events",
        exchange_passive: bool = False,
        declare_queue: bool = True,
        queue: str = "exmail.events",
        queue_type: Literal["quorum", "classic"] = "quorum",
        binding_key: str = "#",
        connect_backoff: Backoff | None = None,
        name: str = "amqp",
        heartbeat: int = 5,
        confirm_timeout: float = 15.0,
        content_mode: ContentMode = "structured",
        header_prefix: HeaderPrefix = "cloudEvents_",
    ) -> None:
        self._message = functools.partial(amqp_message, mode=content_mode, prefix=header_prefix)
        self._exchange_name = exchange
        self._exchange_passive = exchange_passive
        self._declare_queue = declare_queue
        self._queue_name = queue
        self._queue_type = queue_type
        self._binding_key = binding_key
        self._name = name
        self._link = BrokerLink(
            url=url,
            session=self._session,
            name="exmail-relay sink",
            what="RabbitMQ connection",
            heartbeat=heartbeat,
            # Declares may wait on a busy broker: more than a heartbeat, bounded all the same.
            op_timeout=max(10.0, float(heartbeat)),
            backoff=connect_backoff or Backoff(base=0.5, cap=30.0),
            logger=log,
            log_extra={"sink": name},
            client_properties={"app_id": APP_ID},
            on_down=self._down,
        )
        self._channel: AbstractChannel | None = None
        self._underlay: aiormq.Channel | None = None
        self._exchange: AbstractExchange | None = None
        self._confirm_timeout = confirm_timeout
        # The current session's publishes awaiting their confirm: ticket -> (loop time
        # sent, the task sending it), oldest first. A new dict per session (_release).
        self._unconfirmed: dict[int, tuple[float, asyncio.Task[Any] | None]] = {}
        # Tickets of an ended session whose send _release cancelled: it answers Unavailable.
        self._released: set[int] = set()
        self._tickets = itertools.count()
        # Set while the link counts as stalled (until the next session is up).
        self._stalled: str | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self.target = self._link.target

    def __repr__(self) -> str:
        return f"AmqpSink({self.target!r}, exchange={self._exchange_name!r})"

    @property
    def name(self) -> str:
        return self._name

    @property
    def last_error(self) -> str | None:
        return self._watchdog_error or self._stalled or self._link.last_error

    _watchdog_error: str | None = None

    @property
    def link(self) -> BrokerLink:
        return self._link

    @property
    def blocked(self) -> str | None:
        """While RabbitMQ blocks publishing (a resource alarm): its reason."""
        return self._link.blocked

    @property
    def block_status(self) -> dict[str, str | float] | None:
        """While blocked: ``reason`` and ``since`` (the status document's ``blocked``)."""
        return self._link.block_status

    @property
    def connected(self) -> bool:
        channel = self._channel
        return (
            self._link.connected
            and channel is not None
            and not channel.is_closed
            and self._exchange is not None
            and self._stalled is None
        )

    async def __aenter__(self) -> AmqpSink:
        await self._link.__aenter__()
        self._watchdog = asyncio.create_task(self._watch_confirms(), name="amqp-confirms")
        self._watchdog.add_done_callback(self._watchdog_done)
        return self

    def _watchdog_done(self, task: asyncio.Task[None]) -> None:
        """The watchdog only ends by being cancelled; anything else is a bug, shown at
        once (log, ``last_error``) instead of at shutdown."""
        if task.cancelled() or task.exception() is None:
            return
        error = task.exception()
        self._watchdog_error = f"internal error while watching confirms: {type(error).__name__}"
        log.error(
            "RabbitMQ confirm watchdog crashed",
            exc_info=error,
            extra={"sink": self.name, "target": self.target},
        )

    async def __aexit__(self, *exc_info: object) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            # A crash was already reported by _watchdog_done; only the wait is left.
            await asyncio.wait([self._watchdog])
        await self._link.close(grace=5.0)

    async def wait_connected(self, seconds: float) -> bool:
        """Wait until connected (tests, start-up logs); False after ``seconds``."""
        return await wait_until(lambda: self.connected, seconds)

    async def _session(self, connection: AbstractConnection) -> None:
        """One connection: declare, then publish (``send``) until the link is lost."""
        op = self._link.op
        channel = await op(connection.channel(publisher_confirms=True, on_return_raises=True))
        # The broker may close the channel alone (a publish to a deleted exchange): the
        # link is then lost, and the next session declares again.
        self._link.watch(channel, f"the channel of sink {self._name!r}")
        if self._exchange_passive:
            try:
                exchange = await op(channel.get_exchange(self._exchange_name, ensure=True))
            except aiormq.exceptions.ChannelNotFoundEntity as exc:
                raise LinkLost(
                    f"exchange {self._exchange_name!r} not found, and exchange_passive is "
                    f"set: the relay does not declare it ({describe(exc)})"
                ) from exc
        else:
            exchange = await op(
                channel.declare_exchange(
                    self._exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
                )
            )
        if self._declare_queue:
            arguments: FieldTable = {"x-queue-type": self._queue_type}
            queue = await op(
                channel.declare_queue(self._queue_name, durable=True, arguments=arguments)
            )
            await op(queue.bind(exchange, routing_key=self._binding_key))
        # The aiormq channel under ``channel``, fetched once per session, not per publish;
        # publish() works on aiormq's own Channel (its lock, tags and confirm futures).
        underlay = await channel.get_underlay_channel()
        if not isinstance(underlay, aiormq.Channel):
            raise TypeError(f"not an aiormq channel: {type(underlay).__name__}")
        self._underlay = underlay
        self._channel, self._exchange = channel, exchange
        self._stalled = None
        self._link.up()
        await self._link.until_lost()

    def _down(self) -> None:
        self._release()
        self._channel = self._exchange = None
        self._underlay = None

    def _release(self) -> None:
        """The session is over: every send still in flight on it answers Unavailable.

        aiormq rejects the confirms a closed connection owes, but a publisher waiting
        for room in its writer queue (which nothing reads once the writer stopped) waits
        forever, holding the channel lock that every later publish waits for. Each send
        left is cancelled here (no timer per publish), and ``send`` answers Unavailable:
        its row stays pending. The next session starts with an empty table.
        """
        ended, self._unconfirmed = self._unconfirmed, {}
        for ticket, (_, task) in ended.items():
            if task is not None and not task.done():
                self._released.add(ticket)
                task.cancel()

    async def _watch_confirms(self) -> None:
        """Every ``confirm_timeout / 4`` s (at most 1 s): is the oldest publish awaiting
        its confirm older than ``confirm_timeout``? Then the link is stalled. A block
        is not a stall: its time does not count (ages start again at the unblock)."""
        loop = asyncio.get_running_loop()
        period = min(1.0, self._confirm_timeout / 4)
        link = self._link
        while True:
            await asyncio.sleep(period)
            if self._stalled is not None or not link.connected or link.blocked is not None:
                continue  # being dropped already, lost (publishes released), or blocked
            oldest = next(iter(self._unconfirmed.values()), None)
            if oldest is None:
                continue
            age = loop.time() - max(oldest[0], link.unblocked_at)
            if age > self._confirm_timeout:
                await self._drop_stalled_link()

    async def _drop_stalled_link(self) -> None:
        reason = f"publish not confirmed within {self._confirm_timeout:g} s"
        self._stalled = reason
        log.warning(
            "RabbitMQ link stalled, reconnecting",
            extra={"sink": self.name, "target": self.target, "error": reason},
        )
        # Closing rejects every publish awaiting a confirm on this connection; the link
        # then reconnects (and the next session clears the stall). Bounded: the close
        # handshake itself goes over the stalled link.
        await self._link.abort(reason)

    async def send(self, delivery: Delivery) -> Outcome:
        exchange, underlay = self._exchange, self._underlay
        if exchange is None or underlay is None or not self.connected:
            return Unavailable(self.last_error or "not connected to RabbitMQ")
        try:
            message = self._message(delivery.body)
        except MessageError as exc:
            return Dead(f"cannot be sent in this content mode: {exc}")
        headers: FieldTable = dict(message.headers)
        if delivery.traceparent is not None:  # tracing on: the W3C trace context
            headers["traceparent"] = delivery.traceparent
            if delivery.tracestate:
                headers["tracestate"] = delivery.tracestate
        properties = WireProperties(
            content_type=message.content_type,
            headers=headers or None,
            message_id=delivery.event_id,
            message_type=delivery.type,
            timestamp=datetime.fromtimestamp(delivery.created, UTC),
            app_id=APP_ID,
            delivery_mode=PERSISTENT,
        )
        loop = asyncio.get_running_loop()
        ticket, unconfirmed = next(self._tickets), self._unconfirmed  # this session's table
        task = asyncio.current_task(loop)  # with the loop: a third of the cost without
        unconfirmed[ticket] = (loop.time(), task)
        try:
            # Straight to aiormq's channel, not through aio-pika's Exchange.publish, and
            # without waiting for the socket write: publishes then do not queue behind
            # each other on the channel lock while the writer flushes, and the only
            # suspension per message is the broker's confirm. The window bounds what can
            # be buffered. No per-publish timeout either: it costs a timer per message.
            # The watchdog (_watch_confirms) puts an age limit on them all. publish() is
            # aiormq's basic_publish(mandatory=True, wait=False) with cheaper marshalling.
            await publish(
                underlay,
                message.body,
                exchange=exchange.name,
                routing_key=delivery.routing_key,
                properties=properties,
            )
        except aiormq.exceptions.PublishError:
            return Retry(f"unroutable: no queue bound for {delivery.routing_key!r}")
        except aiormq.exceptions.DeliveryError:
            return Retry("the broker refused the message (nack)")
        except (
            aiormq.exceptions.AMQPError,
            aio_pika.exceptions.AMQPException,
            ConnectionError,
            TimeoutError,
            RuntimeError,
        ) as exc:
            if self._stalled is not None:  # rejected by the watchdog's close
                return Unavailable(self._stalled)
            return Unavailable(f"publish failed: {describe(exc)}")
        except asyncio.CancelledError:
            # Ours (_release: its session ended) unless someone else cancelled it too.
            if not self._uncancel(ticket, task):
                raise
            return Unavailable(self.last_error or "the RabbitMQ connection was lost")
        finally:
            unconfirmed.pop(ticket, None)
            if self._released:  # a cancel of ours that did not arrive as CancelledError
                self._uncancel(ticket, task)
        return Delivered()

    def _uncancel(self, ticket: int, task: asyncio.Task[Any] | None) -> bool:
        """Take back :meth:`_release`'s cancel of ``ticket``'s send, if it made one:
        True when no other cancel of its task is pending."""
        if task is None or ticket not in self._released:
            return False
        self._released.discard(ticket)
        return task.uncancel() == 0
