"""Pacing with real processes (issue 20 item 4): three ``exmail-relay run`` replicas in
lease mode, 120 tenants on one emulator, ``[sharding] takeover_rate = 10``. Neither the
cold start (fresh journals: every tenant needs a token and a bootstrap) nor a kill -9
takeover may send one replica's token fetches (or bootstrap listings) faster than the
bucket allows, and every tenant ends up listening.

Everything is read from the emulator's request log (``token_fetches``, ``calls``: each
request carries ``X-Relay-Replica``). The bound is per replica and per window of one
second: at most ``rate + burst`` turns (the bucket's own guarantee), plus 3 for requests
that reached the log up to 0.3 s late (this process runs the emulator and polls the
replicas on one loop, on a busy machine) and so land next to later ones. A bootstrap's
``user/list`` follows its token fetch by a round trip of varying length, so those are
counted over 2 s: at most ``2 x rate + burst + 3``. With ``takeover_rate = 100000``
(unpaced) both parts fail: 30 to 49 fetches in one second per replica at the cold
start, up to 33 per survivor at the takeover.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import pytest

from relay.core.pacing import default_burst
from tests.ha.support import Cluster, admin, cluster, tenants_of
from tests.support import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow, pytest.mark.timeout(300)]

TENANTS = 120
RATE = 10
BOUND = RATE + default_burst(RATE) + 3  # in any second
LIST_BOUND = 2 * RATE + default_burst(RATE) + 3  # in any 2 s


def busiest(moments: Iterable[float], seconds: float = 1.0) -> int:
    """The most moments in any window of ``seconds``."""
    times = sorted(moments)
    most = 0
    j = 0
    for i, start in enumerate(times):
        j = max(j, i)
        while j < len(times) and times[j] < start + seconds:
            j += 1
        most = max(most, j - i)
    return most


def per_replica(pairs: Iterable[tuple[str, float]]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = defaultdict(list)
    for replica, at in pairs:
        out[replica].append(at)
    return dict(out)


def peaks(group: Cluster, since: float) -> tuple[dict[str, int], dict[str, int], int]:
    """Per replica since ``since``: the busiest second of token fetches, the busiest 2 s
    of ``user/list`` calls (bootstraps); and the number of token fetches in all."""
    fetches = group.emu.token_fetches(since=since)
    listings = [c for c in group.emu.calls(since=since) if c.operation == "user/list"]
    tokens = per_replica((f.replica, f.at) for f in fetches)
    lists = per_replica((c.replica, c.at) for c in listings)
    return (
        {r: busiest(t) for r, t in sorted(tokens.items())},
        {r: busiest(t, 2.0) for r, t in sorted(lists.items())},
        len(fetches),
    )


async def states_seen(group: Cluster, until: asyncio.Event) -> set[str]:
    """Every tenant state the replicas' status documents showed until ``until``."""
    seen: set[str] = set()
    while not until.is_set():
        for replica in group.alive():
            code, doc = await replica.process.get("status.json")
            if code == 200:
                seen |= {t["state"] for t in doc["tenants"]}
        await asyncio.sleep(0.25)
    return seen


async def test_cold_start_and_takeover_keep_token_fetches_within_the_rate(
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    async with cluster(
        tmp_path,
        sharding=f"takeover_rate = {RATE}",
        tenants=TENANTS,
        hold=5.0,
        settle=180.0,
    ) as (group, _consumer):
        settled_at = time.monotonic()
        cold_tokens, cold_lists, cold_total = peaks(group, started)
        owned = await group.wait_settled()
        victim = group.replicas[max(owned, key=lambda n: len(tenants_of(owned[n], group.tenants)))]
        moved = tenants_of(owned[victim.name], group.tenants)
        watching = asyncio.Event()
        watcher = asyncio.create_task(states_seen(group, watching))
        killed_at = time.monotonic()
        group.kill(victim)
        assert victim.process.proc is not None
        await victim.process.proc.wait()

        def all_moved() -> bool:
            listening = group.listening()
            return all(
                listening.get(admin(t)) and victim.name not in listening[admin(t)] for t in moved
            )

        await eventually(all_moved, seconds=120, what=f"{len(moved)} tenants listening elsewhere")
        moved_at = time.monotonic()
        watching.set()
        states = await watcher
        take_tokens, take_lists, take_total = peaks(group, killed_at)
        await group.wait_settled(120)
    print(
        f"\ncold start, {TENANTS} tenants, rate {RATE}: settled after "
        f"{settled_at - started:.1f} s; token fetches {cold_total}, busiest second per "
        f"replica {cold_tokens}, user/list (2 s) {cold_lists}"
        f"\nkill -9 {victim.name} ({len(moved)} tenants): all listening elsewhere after "
        f"{moved_at - killed_at:.1f} s; token fetches {take_total}, busiest second per "
        f"survivor {take_tokens}, user/list {take_lists}; states seen {sorted(states)}"
    )
    assert cold_tokens and max(cold_tokens.values()) <= BOUND, cold_tokens
    assert not cold_lists or max(cold_lists.values()) <= LIST_BOUND, cold_lists
    assert cold_total >= TENANTS, "every tenant fetched its token"
    assert victim.name not in take_tokens, "the dead replica fetched nothing"
    assert take_tokens and max(take_tokens.values()) <= BOUND, take_tokens
    assert not take_lists or max(take_lists.values()) <= LIST_BOUND, take_lists
    assert take_total >= len(moved), "every moved tenant fetched a token on its new owner"
    assert "waiting" in states, "a tenant waiting for its turn shows it"
    assert "failed" not in states and "backoff" not in states, states
