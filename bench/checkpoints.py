"""``python -m bench.checkpoints [--tenants N] [--commits C] [--replicas R] [--per-commit]``.

What a takeover pays to read checkpoints from the broker
(:meth:`relay.runtime.checkpoints.CheckpointStream.latest`). ``R`` replicas publish
``C`` commits for each of ``N`` tenants on a private stream that is deleted afterwards,
flushing after every round of commits (many tenants per message) or, with
``--per-commit``, after every single commit (the worst case: one message per commit,
``N * C`` messages, as when tenants commit at different moments).
A fresh stream instance (a new owner) then reads the newest Ver of all
``N`` tenants, and of one shard's worth (``N / 16``). Prints the figures as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid

import aio_pika
from pydantic import SecretStr

from relay.runtime.checkpoints import CheckpointStream


async def run(
    url: str, tenants: int, commits: int, replicas: int, per_commit: bool
) -> dict[str, object]:
    prefix = f"exmail.relay.bench-{uuid.uuid4().hex[:8]}"
    names = [f"tenant-{i}" for i in range(tenants)]
    try:
        # No linger: the stream gets one message per flush, more than a relay would
        # write (at most one send per ``linger``, 0.1 s), so the read is a worst case.
        publishers = [
            CheckpointStream(url=SecretStr(url), prefix=prefix, linger=0) for _ in range(replicas)
        ]
        started = time.perf_counter()
        for p in publishers:
            await p.__aenter__()
        for commit in range(commits):
            for r, p in enumerate(publishers):
                for name in names[r::replicas]:
                    p.publish(name, commit)
                    if per_commit and not await p.flush(60):
                        raise SystemExit("publishing did not finish")
                if not await p.flush(60):
                    raise SystemExit("publishing did not finish")
        published = time.perf_counter() - started
        messages = sum(p.published for p in publishers)
        for p in publishers:
            await p.__aexit__(None, None, None)
        async with CheckpointStream(url=SecretStr(url), prefix=prefix) as owner:
            t0 = time.perf_counter()
            found = await owner.latest(names, timeout=120)
            read_all = time.perf_counter() - t0
            t0 = time.perf_counter()
            await owner.latest(names[: max(1, tenants // 16)], timeout=120)
            read_shard = time.perf_counter() - t0
        if found != dict.fromkeys(names, commits - 1):
            raise SystemExit("the read did not find the newest Ver of every tenant")
        return {
            "tenants": tenants,
            "commits": commits,
            "replicas": replicas,
            "per_commit": per_commit,
            "messages": messages,
            "publish_s": round(published, 3),
            "latest_all_s": round(read_all, 3),
            "latest_one_shard_s": round(read_shard, 3),
        }
    finally:
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()
            await channel.queue_delete(f"{prefix}.checkpoints")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--commits", type=int, default=20)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--per-commit", action="store_true")
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/")
    args = parser.parse_args()
    print(
        json.dumps(
            asyncio.run(run(args.url, args.tenants, args.commits, args.replicas, args.per_commit))
        )
    )


if __name__ == "__main__":
    main()
