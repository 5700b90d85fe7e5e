"""``python -m bench.checkpoints [--tenants N] [--commits C] [--replicas R] [--shards S]``.

What a takeover pays to read checkpoints from the broker
(:meth:`relay.runtime.checkpoints.CheckpointStore.latest`). ``R`` replicas publish
``C`` commits for each of ``N`` tenants into private per-shard queues (deleted
afterwards), flushing after every round of commits, so every shard queue holds its
newest ``KEEP`` snapshots, each the whole shard. A fresh store (a new owner) then reads
one shard, and every shard one after the other. Prints the figures as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid

import aio_pika
from pydantic import SecretStr

from relay.core.shards import shard_of
from relay.runtime.checkpoints import CheckpointStore

SECRET = SecretStr("bench-secret-0123456789abcdef")


async def run(
    url: str, tenants: int, commits: int, replicas: int, shards: int
) -> dict[str, object]:
    prefix = f"exmail.relay.bench-{uuid.uuid4().hex[:8]}"
    names = [f"tenant-{i}" for i in range(tenants)]

    def store() -> CheckpointStore:
        return CheckpointStore(
            url=SecretStr(url), secrets=[SECRET], shards=shards, prefix=prefix, linger=0
        )

    try:
        publishers = [store() for _ in range(replicas)]
        started = time.perf_counter()
        for p in publishers:
            await p.__aenter__()
        for commit in range(commits):
            for r, p in enumerate(publishers):
                for name in names[r::replicas]:
                    p.publish(name, commit)
                if not await p.flush(60):
                    raise SystemExit("publishing did not finish")
        published = time.perf_counter() - started
        messages = sum(p.published for p in publishers)
        for p in publishers:
            await p.__aexit__(None, None, None)
        by_shard: dict[int, list[str]] = {}
        for name in names:
            by_shard.setdefault(shard_of(name, shards), []).append(name)
        async with store() as owner:
            t0 = time.perf_counter()
            await owner.latest(0, by_shard.get(0, []), timeout=120)
            read_shard = time.perf_counter() - t0
            found: dict[str, int] = {}
            t0 = time.perf_counter()
            for shard, members in sorted(by_shard.items()):
                found |= await owner.latest(shard, members, timeout=120)
            read_all = time.perf_counter() - t0
        if found != dict.fromkeys(names, commits - 1):
            raise SystemExit("the read did not find the newest Ver of every tenant")
        return {
            "tenants": tenants,
            "commits": commits,
            "replicas": replicas,
            "shards": shards,
            "messages": messages,
            "publish_s": round(published, 3),
            "latest_one_shard_s": round(read_shard, 3),
            "latest_every_shard_s": round(read_all, 3),
        }
    finally:
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()
            for shard in range(shards):
                await channel.queue_delete(f"{prefix}.checkpoint.{shard}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--commits", type=int, default=20)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/")
    args = parser.parse_args()
    print(
        json.dumps(
            asyncio.run(run(args.url, args.tenants, args.commits, args.replicas, args.shards))
        )
    )


if __name__ == "__main__":
    main()
