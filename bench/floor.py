"""The floor baseline: ``python -m bench.floor SPEC.json``.

The least code that does the relay's I/O in one asyncio process: per tenant, a token
from ``/cgi-bin/token`` (client_id/client_secret), the directory Ver from ``user/list``,
then ``listen`` with ``Ver`` and a Bearer token in a loop; each new-mail reminder is
parsed with ``json`` and published with aio-pika (publisher confirms, persistent,
mandatory) before the next listen. No journal, no metrics, no validation, no retries
beyond fetching a new token. It is what the relay's overhead is measured against.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import Any

import aio_pika
import aiohttp

from bench.cloudevent import mail_event


async def fetch_token(session: aiohttp.ClientSession, tenant: dict[str, Any]) -> dict[str, str]:
    form = {
        "grant_type": "client_credentials",
        "client_id": tenant["client_id"],
        "client_secret": tenant["client_secret"],
    }
    async with session.post(tenant["token_url"], data=form) as resp:
        token = (await resp.json(content_type=None))["access_token"]
    return {"Authorization": f"Bearer {token}"}


def message(tenant: str, item: dict[str, Any]) -> aio_pika.Message:
    event_id, body = mail_event(tenant, item)
    return aio_pika.Message(
        body,
        content_type="application/cloudevents+json",
        message_id=event_id,
        type="exmail.mail.new",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


async def serve(
    session: aiohttp.ClientSession,
    exchange: aio_pika.abc.AbstractExchange,
    tenant: dict[str, Any],
    hold: float,
) -> None:
    name, api = tenant["name"], tenant["api_url"]
    headers = await fetch_token(session, tenant)
    async with session.post(api + "user/list", data={"Ver": "0"}, headers=headers) as resp:
        ver = int((await resp.json(content_type=None))["Ver"])
    timeout = aiohttp.ClientTimeout(total=hold + 10)
    while True:
        async with session.post(
            api + "listen", data={"Ver": str(ver)}, headers=headers, timeout=timeout
        ) as resp:
            body = await resp.read()
        if not body:
            continue
        doc = json.loads(body)
        publishes = []
        for item in doc if isinstance(doc, list) else [doc]:
            if "MailId" in item:
                publishes.append(
                    exchange.publish(
                        message(name, item), routing_key=f"{name}.mail.new", mandatory=True
                    )
                )
            elif "Ver" in item:
                ver = int(item["Ver"])
            elif str(item.get("errcode", "0")) == "1200":
                headers = await fetch_token(session, tenant)
        if publishes:
            await asyncio.gather(*publishes)


async def main(spec: dict[str, Any]) -> None:
    connection = await aio_pika.connect(spec["amqp_url"])
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(spec["exchange"])
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            await asyncio.gather(
                *(serve(session, exchange, t, spec["hold"]) for t in spec["tenants"])
            )


if __name__ == "__main__":
    # SIGTERM as a clean exit, so ``--profile`` (cProfile) writes this process's stats.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with open(sys.argv[1]) as handle:
        asyncio.run(main(json.load(handle)))
