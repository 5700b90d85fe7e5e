"""A minimal exmail-relay consumer for Python, with the official libraries:

- aio-pika: RabbitMQ (the relay's topic exchange, a queue of our own);
- standardwebhooks: the webhook signature (every secret we hold, for rotations);
- cloudevents (2.x): every message and webhook parsed into a CloudEvent by the SDK's
  AMQP and HTTP bindings (structured or binary mode, detected).

    pip install -r requirements.txt
    AMQP_URL=amqp://guest:guest@127.0.0.1:5672/ WEBHOOK_PORT=8000 \\
    WEBHOOK_SECRETS=whsec_... python consumer.py

Configuration (environment), as for the Node and Java recipes: ``AMQP_URL`` (unset: no
RabbitMQ consumer), ``AMQP_EXCHANGE`` (default ``exmail.events``), ``AMQP_QUEUE``
(default ``oa.exmail``), ``AMQP_BINDING`` (default ``#``), ``WEBHOOK_PORT`` (0: any;
unset: no receiver), ``WEBHOOK_SECRETS`` (the endpoint's secret; during a rotation the
old and the new one, separated by spaces).

It prints one JSON line per event it accepted, ``{"refused": ...}`` for anything it
refused, and ``{"ready": ...}`` once it listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from typing import Any

import aio_pika
from aiohttp import web
from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings import amqp, http
from cloudevents.core.exceptions import BaseCloudEventException
from standardwebhooks.webhooks import Webhook

MAX_BODY = 1 << 20  # read a body whole, or refuse it
PREFIXES = ("cloudEvents_", "cloudEvents:")  # binary mode attribute headers
# What the SDK raises for a message that is no valid CloudEvent (bad JSON included).
NOT_AN_EVENT = (BaseCloudEventException, ValueError, TypeError, KeyError)

# Delivery is at least once: the id is the deduplication key (a real consumer keeps it
# in its database; here, in memory).
seen: set[str] = set()


def out(record: dict[str, Any]) -> None:
    print(json.dumps(record, ensure_ascii=False, default=str), flush=True)


def handle(event: BaseCloudEvent, via: str, **extra: Any) -> None:
    """What the consumer does with an event: here, print it."""
    duplicate = event.get_id() in seen
    seen.add(event.get_id())
    out({"via": via, "id": event.get_id(), "type": event.get_type(),
         "subject": event.get_subject(), "data": event.get_data(),
         "duplicate": duplicate, **extra})  # fmt: skip


# -- RabbitMQ -----------------------------------------------------------------------------


def event_from_amqp(message: aio_pika.abc.AbstractIncomingMessage) -> tuple[BaseCloudEvent, str]:
    """The SDK's AMQP binding: structured mode when the content type is
    application/cloudevents+json, binary mode (cloudEvents_* headers) otherwise."""
    content_type = message.content_type or ""
    headers = {k: v for k, v in (message.headers or {}).items() if k.startswith(PREFIXES)}
    headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in headers.items()}
    mode = "structured" if content_type.startswith("application/cloudevents") else "binary"
    wire = amqp.AMQPMessage(
        properties={"content-type": content_type},
        application_properties=headers,
        application_data=message.body,
    )
    return amqp.from_amqp_event(wire), mode


async def consume_amqp(url: str) -> aio_pika.abc.AbstractConnection:
    connection = await aio_pika.connect_robust(url)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=50)
    exchange = await channel.declare_exchange(
        os.environ.get("AMQP_EXCHANGE", "exmail.events"), aio_pika.ExchangeType.TOPIC, durable=True
    )
    queue = await channel.declare_queue(os.environ.get("AMQP_QUEUE", "oa.exmail"), durable=True)
    await queue.bind(exchange, routing_key=os.environ.get("AMQP_BINDING", "#"))

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        try:
            event, mode = event_from_amqp(message)
        except NOT_AN_EVENT as exc:
            out({"via": "amqp", "refused": f"{type(exc).__name__}: {exc}",
                 "id": message.message_id})  # fmt: skip
            await message.reject(requeue=False)  # never redeliver what cannot be read
            return
        handle(event, "amqp", mode=mode, routing_key=message.routing_key)
        await message.ack()

    await queue.consume(on_message)
    return connection


# -- webhooks -----------------------------------------------------------------------------


def event_from_http(headers: dict[str, str], body: bytes) -> BaseCloudEvent:
    """The SDK's HTTP binding. It reads any body without ce-* headers as structured
    mode; the binding says that takes ``application/cloudevents+json`` (anything else
    is no CloudEvent, as the JS SDK answers), so that is checked first."""
    lower = {name.lower(): value for name, value in headers.items()}
    binary_mode = any(name.startswith("ce-") for name in lower)
    if not binary_mode and not lower.get("content-type", "").startswith("application/cloudevents"):
        raise ValueError(f"no CloudEvent: content type {lower.get('content-type')!r}")
    return http.from_http_event(http.HTTPMessage(headers=headers, body=body))


def webhook_app(secrets: list[str]) -> web.Application:
    verifiers = [Webhook(secret) for secret in secrets]

    async def receive(request: web.Request) -> web.Response:
        if (request.content_length or 0) > MAX_BODY:
            return web.Response(status=413)
        raw = await request.content.read(MAX_BODY + 1)  # the raw bytes are what is signed
        if len(raw) > MAX_BODY:
            return web.Response(status=413)
        headers = dict(request.headers)
        verified = []
        for index, verifier in enumerate(verifiers):
            with contextlib.suppress(Exception):  # not signed with this secret, or too old
                verifier.verify(raw, headers)
                verified.append(index)
        if not verified:
            out({"via": "webhook", "refused": "no signature verifies",
                 "id": headers.get("webhook-id")})  # fmt: skip
            return web.Response(status=401)
        try:
            event = event_from_http(headers, raw)
        except NOT_AN_EVENT as exc:
            out({"via": "webhook", "refused": f"{type(exc).__name__}: {exc}",
                 "id": headers.get("webhook-id")})  # fmt: skip
            return web.Response(status=400)
        handle(event, "webhook", verified_with=verified,
               content_type=request.headers.get("Content-Type"))  # fmt: skip
        return web.Response(status=204)

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post("/{tail:.*}", receive)
    return app


async def main() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    ready: dict[str, Any] = {}
    async with contextlib.AsyncExitStack() as stack:
        if url := os.environ.get("AMQP_URL"):
            connection = await consume_amqp(url)
            stack.push_async_callback(connection.close)
            ready["amqp"] = True
        if (port := os.environ.get("WEBHOOK_PORT")) is not None:
            secrets = os.environ.get("WEBHOOK_SECRETS", "").split()
            if not secrets:
                sys.exit("WEBHOOK_SECRETS is required with WEBHOOK_PORT")
            runner = web.AppRunner(webhook_app(secrets))
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            site = web.TCPSite(runner, "127.0.0.1", int(port))
            await site.start()
            ready["webhook_port"] = runner.addresses[0][1]
        out({"ready": ready})
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
