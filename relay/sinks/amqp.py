"""The AMQP sink: publishes journaled events to RabbitMQ with aio-pika.

Every event is a persistent message in CloudEvents structured mode on a durable topic
exchange, routing key ``<tenant>.<type minus "exmail.">``. A row counts as delivered
only after the broker's publisher confirm. Publishing is mandatory, so a message no
queue would take comes back and counts as a failure (retried), not as a success.

Many publishes are in flight at once (the drainer's window), each awaiting its own
confirm: throughput is bounded by the broker, not by round trips.

The connection is ``connect_robust``; the first connect is retried here with capped,
jittered backoff, because ``connect_robust`` only reconnects after a first success.
While disconnected, :meth:`AmqpSink.send` answers :class:`~relay.sinks.Unavailable`
and the drainer pauses: events wait in the journal and go out in order when the broker
returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Literal

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection
from aiormq import spec
from pydantic import SecretStr

from relay.core.backoff import Backoff
from relay.core.delivery import Delivered, Delivery, Outcome, Retry, Unavailable
from relay.core.events import CONTENT_TYPE
from relay.core.redact import redact_url

__all__ = ["AmqpSink"]

log = logging.getLogger("relay.sinks.amqp")

APP_ID = "exmail-relay"
PERSISTENT = int(aio_pika.DeliveryMode.PERSISTENT)


class AmqpSink:
    """Publishes to RabbitMQ. Use as an async context manager; it owns its connector."""

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
    ) -> None:
        self._url = url
        self._exchange_name = exchange
        self._exchange_passive = exchange_passive
        self._declare_queue = declare_queue
        self._queue_name = queue
        self._queue_type = queue_type
        self._binding_key = binding_key
        self._backoff = connect_backoff or Backoff(base=0.5, cap=30.0)
        self._name = name
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._connector: asyncio.Task[None] | None = None
        self.last_error: str | None = None
        self.target = redact_url(url.get_secret_value(), keep_user=True)

    def __repr__(self) -> str:
        return f"AmqpSink({self.target!r}, exchange={self._exchange_name!r})"

    @property
    def name(self) -> str:
        return self._name

    @property
    def connected(self) -> bool:
        connection, channel = self._connection, self._channel
        return (
            connection is not None
            and connection.connected.is_set()
            and channel is not None
            and not channel.is_closed
            and self._exchange is not None
        )

    async def __aenter__(self) -> AmqpSink:
        self._connector = asyncio.create_task(self._connect_loop(), name="amqp-connect")
        self._connector.add_done_callback(self._connector_done)
        return self

    def _connector_done(self, task: asyncio.Task[None]) -> None:
        """The connect loop only ends by connecting or being cancelled; anything else is
        a bug, shown at once (log, ``last_error``) instead of at shutdown."""
        if task.cancelled() or task.exception() is None:
            return
        error = task.exception()
        self.last_error = f"internal error while connecting: {type(error).__name__}"
        log.error(
            "RabbitMQ connect loop crashed",
            exc_info=error,
            extra={"sink": self.name, "target": self.target},
        )

    async def __aexit__(self, *exc_info: object) -> None:
        if self._connector is not None:
            self._connector.cancel()
            # A crash was already reported by _connector_done; only the wait is left.
            await asyncio.wait([self._connector])
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._connection.close(), timeout=5)
        self._connection = self._channel = None
        self._exchange = None

    async def wait_connected(self, seconds: float) -> bool:
        """Wait until connected (tests, start-up logs); False after ``seconds``."""
        deadline = asyncio.get_running_loop().time() + seconds
        while not self.connected:
            if asyncio.get_running_loop().time() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def _connect_loop(self) -> None:
        attempt = 0
        while True:
            try:
                await self._connect()
            except (OSError, aiormq.exceptions.AMQPError, TimeoutError) as exc:
                self.last_error = f"cannot connect to {self.target}: {_describe(exc)}"
                delay = self._backoff.delay(attempt)
                if attempt % 10 == 0:
                    log.warning(self.last_error, extra={"sink": self.name, "retry_in": delay})
                attempt += 1
                await asyncio.sleep(delay)
                continue
            self.last_error = None
            log.info("connected to RabbitMQ", extra={"sink": self.name, "target": self.target})
            return

    async def _connect(self) -> None:
        connection = await aio_pika.connect_robust(
            self._url.get_secret_value(), timeout=10, client_properties={"app_id": APP_ID}
        )
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            if self._exchange_passive:
                exchange = await channel.get_exchange(self._exchange_name, ensure=True)
            else:
                exchange = await channel.declare_exchange(
                    self._exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
                )
            if self._declare_queue:
                arguments = {"x-queue-type": self._queue_type}
                queue = await channel.declare_queue(
                    self._queue_name, durable=True, arguments=arguments
                )
                await queue.bind(exchange, routing_key=self._binding_key)
        except BaseException:
            with contextlib.suppress(Exception):
                await connection.close()
            raise
        self._connection, self._channel, self._exchange = connection, channel, exchange

    async def send(self, delivery: Delivery) -> Outcome:
        exchange, channel = self._exchange, self._channel
        if exchange is None or channel is None or not self.connected:
            return Unavailable(self.last_error or "not connected to RabbitMQ")
        properties = spec.Basic.Properties(
            content_type=CONTENT_TYPE,
            message_id=delivery.event_id,
            message_type=delivery.type,
            timestamp=datetime.fromtimestamp(delivery.created, UTC),
            app_id=APP_ID,
            delivery_mode=PERSISTENT,
        )
        try:
            underlay = await channel.get_underlay_channel()
            # Straight to aiormq, not through aio-pika's Exchange.publish, and without
            # waiting for the socket write (wait=False): publishes then do not queue
            # behind each other on the channel lock while the writer flushes, and the
            # only suspension per message is the broker's confirm. The window bounds
            # what can be buffered. No per-publish timeout either: it costs a timer per
            # message, and a confirm that never comes (a blocked broker) only holds a
            # slot of the window; the backlog then grows into backpressure, and
            # shutdown cancels the attempt, which leaves the row pending.
            await underlay.basic_publish(  # type: ignore[call-arg]
                delivery.body,
                exchange=exchange.name,
                routing_key=delivery.routing_key,
                properties=properties,
                mandatory=True,
                wait=False,
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
            self.last_error = f"publish failed: {_describe(exc)}"
            return Unavailable(self.last_error)
        return Delivered()


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:200]
