"""The RabbitMQ consumer of a run: ``python -m bench.consumer --exchange X --queue Q ...``.

Declares the run's topic exchange and a queue bound with ``#`` (so nothing the target
publishes is unroutable), prints ``ready``, then counts ``*.mail.new`` messages by the
sequence number the harness put in each mail's subject (``bench|<seq>|<emitted>``) and
records when each arrived. It stops once ``--expect`` distinct mails arrived (plus a
short grace, to see duplicates) or at ``--timeout``, and writes its result as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

GRACE = 0.5


async def consume(args: argparse.Namespace) -> dict[str, object]:
    seen: dict[int, tuple[float, float]] = {}
    duplicates = 0
    other = 0
    done = asyncio.Event()

    async def on_message(message: AbstractIncomingMessage) -> None:
        nonlocal duplicates, other
        received = time.time()
        if not (message.routing_key or "").endswith(".mail.new"):
            other += 1
            return
        _, seq, emitted = json.loads(message.body)["data"]["subject"].split("|")
        key = int(seq)
        if key in seen:
            duplicates += 1
        else:
            seen[key] = (float(emitted), received)
            if len(seen) >= args.expect:
                done.set()

    connection = await aio_pika.connect(args.url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            args.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(args.queue, durable=True)
        await queue.bind(exchange, "#")
        await queue.consume(on_message, no_ack=True)
        print("ready", flush=True)
        try:
            await asyncio.wait_for(done.wait(), args.timeout)
            await asyncio.sleep(GRACE)
        except TimeoutError:
            pass
    return {
        "received": len(seen),
        "duplicates": duplicates,
        "other": other,
        "records": [[seq, e, r] for seq, (e, r) in sorted(seen.items())],
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.consumer")
    parser.add_argument("--url", required=True)
    parser.add_argument("--exchange", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--timeout", type=float, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    result = asyncio.run(consume(args))
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
