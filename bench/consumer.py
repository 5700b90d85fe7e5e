"""The RabbitMQ consumer of a run: ``python -m bench.consumer --exchange X --queue Q ...``.

Declares the run's topic exchange and a queue bound with ``#`` (so nothing the target
publishes is unroutable), prints ``ready``, then counts ``*.mail.new`` messages by the
sequence number the harness put in each mail's subject (``bench|<seq>|<emitted>``) and
records when each arrived. It stops once ``--expect`` distinct mails arrived (plus a
short grace, to see duplicates) or at ``--timeout``, and writes its result as JSON.

``--expect-file F`` (the ``callbacks`` scenario): the run learns which mails must arrive
only once its load is over; when ``F`` appears, a JSON list of sequence numbers, the
consumer stops once every one of them arrived (plus ``--grace``). ``--ids`` adds each
mail's event id and MailID to the result, so the run matches them too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from pathlib import Path

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

GRACE = 0.5


async def consume(args: argparse.Namespace) -> dict[str, object]:
    seen: dict[int, tuple[float, float]] = {}
    ids: dict[int, tuple[str, str]] = {}
    remaining: set[int] | None = None  # --expect-file: the seqs still to arrive
    duplicates = 0
    other = 0
    done = asyncio.Event()

    async def on_message(message: AbstractIncomingMessage) -> None:
        nonlocal duplicates, other, remaining
        received = time.time()
        if not (message.routing_key or "").endswith(".mail.new"):
            other += 1
            return
        event = json.loads(message.body)
        _, seq, emitted = event["data"]["subject"].split("|")
        key = int(seq)
        if key in seen:
            duplicates += 1
        else:
            seen[key] = (float(emitted), received)
            if args.ids:
                ids[key] = (event["id"], event["data"]["mail_id"])
            if remaining is not None:
                remaining.discard(key)
                if not remaining:
                    done.set()
            if args.expect_file is None and len(seen) >= args.expect:
                done.set()

    async def watch_expect_file() -> None:
        nonlocal remaining
        while remaining is None:
            with contextlib.suppress(FileNotFoundError, ValueError):
                remaining = set(json.loads(args.expect_file.read_text())) - seen.keys()
                if not remaining:
                    done.set()
                return
            await asyncio.sleep(0.2)

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
        watcher = asyncio.create_task(watch_expect_file()) if args.expect_file else None
        try:
            await asyncio.wait_for(done.wait(), args.timeout)
            await asyncio.sleep(args.grace)
        except TimeoutError:
            pass
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher  # its owner: a bug in it surfaces here
    result: dict[str, object] = {
        "received": len(seen),
        "duplicates": duplicates,
        "other": other,
        "records": [[seq, e, r] for seq, (e, r) in sorted(seen.items())],
    }
    if args.ids:
        result["ids"] = [[seq, i, m] for seq, (i, m) in sorted(ids.items())]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.consumer")
    parser.add_argument("--url", required=True)
    parser.add_argument("--exchange", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--timeout", type=float, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--expect-file", type=Path, help="JSON list of the seqs to wait for")
    parser.add_argument("--grace", type=float, default=GRACE, help="seconds after the last")
    parser.add_argument("--ids", action="store_true", help="record event ids and MailIDs")
    args = parser.parse_args()
    result = asyncio.run(consume(args))
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
