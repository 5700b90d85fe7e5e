"""The fence, with processes: a replica frozen past its leases sends nothing for the
shards it lost once it runs again (issue 18, item 7).

Three ``exmail-relay run`` replicas in lease mode with the API gateway on. The victim
is frozen with SIGSTOP for 30 s (longer than the broker's 3 heartbeats, so its leases
go and the others take its tenants over), then continued with SIGCONT. It is frozen at
the worst moment: for one of its tenants a token fetch is in flight (the emulator holds
it 3 s), a gateway call waits for that fetch (its call was refused with 1200), and the
tenant's listener waits on the token lock behind it; its other tenants are mid-listen.

After SIGCONT the fetch's answer arrives. Before the fix, the fetch handed its token
out without asking the fence and the lock waiters took it, so the listener's ``listen``
and the gateway call's retry left the replica for a shard it had lost. The emulator's
request log (``Emulator.calls``, ``token_fetches``; every request carries
``X-Relay-Replica``) tells the replicas apart: from SIGCONT until the victim takes a
shard again it must show no request and no token fetch of the victim for that shard's
tenants.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from datetime import datetime
from pathlib import Path

import aiohttp
import pytest

from tests.ha.support import Replica, Traffic, admin, cluster, delivered, tenants_of
from tests.pipeline.support import Consumer
from tests.support import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow, pytest.mark.timeout(240)]

KEY = "fence-test-client-key-0123456789"
GATEWAY = f"""
[[clients]]
name = "oa"
key = ["{KEY}"]
scopes = ["read"]
"""
FROZEN = 30.0


async def flowing(consumer: Consumer, traffic: Traffic) -> None:
    sent = len(traffic.sent)
    await eventually(
        lambda: len(traffic.sent) >= sent + 20 and len(delivered(consumer)) >= sent,
        seconds=60,
        what="mail to flow",
    )


def _reacquired(replica: Replica, shard: int, after: float) -> float:
    """Wall time at which ``replica`` logged taking ``shard`` after ``after`` (inf: never)."""
    for line in replica.process.log_lines():
        if line.get("message") != "lease acquired" or line.get("shard") != shard:
            continue
        at = datetime.fromisoformat(line["time"]).timestamp()
        if at >= after:
            return at
    return float("inf")


async def _gateway_get(replica: Replica, tenant: str) -> int:
    url = f"{replica.process.url}v1/tenants/{tenant}/users/user1@{tenant}.test"
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            url,
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=aiohttp.ClientTimeout(total=FROZEN + 60),
        ) as resp,
    ):
        await resp.read()
        return resp.status


async def test_a_replica_frozen_past_its_leases_sends_nothing_for_them(tmp_path: Path) -> None:
    # A request deadline longer than the freeze: the fetch held across it is answered,
    # not timed out, when the victim runs again (the worst case for the fence).
    async with cluster(
        tmp_path, sections=GATEWAY, tenant_options=f"request_timeout = {FROZEN * 3:g}"
    ) as (group, consumer):
        owned = await group.wait_settled(60)
        name = max(owned, key=lambda n: (len(tenants_of(owned[n])), len(owned[n])))
        victim = group.replicas[name]
        lost = owned[name]
        tenant = sorted(tenants_of(lost))[0]
        async with Traffic(group.emu) as traffic:
            await flowing(consumer, traffic)
            # The next user/get is refused with 1200 (its token voided), the next token
            # fetch is held 3 s: the victim is frozen while that fetch is in flight.
            faults = group.emu.control_url + "faults"
            async with aiohttp.ClientSession() as http:
                for fault in (
                    {"kind": "invalid_token", "count": 1, "path": "/openapi/user/get"},
                    {"kind": "delay", "count": 1, "path": "/cgi-bin/token", "seconds": 3.0},
                ):
                    async with http.post(faults, json=fault) as resp:
                        assert resp.status == 200, await resp.text()
            armed_at = time.monotonic()
            call = asyncio.create_task(_gateway_get(victim, tenant))
            try:

                def refused() -> bool:
                    return any(
                        c.operation == "user/get" and c.replica == name
                        for c in group.emu.calls(admin(tenant), since=armed_at)
                    )

                await eventually(refused, seconds=10, what="the gateway call refused")
                await asyncio.sleep(0.5)  # the fetch is under way (held 3 s by the emulator)
                assert victim.process.proc is not None
                victim.process.proc.send_signal(signal.SIGSTOP)
                stopped_at = time.monotonic()
                try:
                    await eventually(
                        lambda: all(
                            group.listening().get(admin(t), set()) - {name}
                            for t in tenants_of(lost)
                        ),
                        seconds=FROZEN - 2,
                        what="the victim's tenants listening elsewhere",
                    )
                    taken_at = time.monotonic()
                    await asyncio.sleep(max(0.0, FROZEN - (time.monotonic() - stopped_at)))
                finally:
                    continued = time.time()
                    victim.process.proc.send_signal(signal.SIGCONT)
                status = await asyncio.wait_for(call, FROZEN + 60)
            finally:
                if not call.done():
                    call.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await call
            await group.wait_settled(60)  # it rejoins and takes its share back
            await flowing(consumer, traffic)
        sent_after = {
            t: [
                (c.operation, round(c.wall - continued, 3))
                for c in group.emu.calls(admin(t))
                if c.replica == name and continued <= c.wall < _reacquired(victim, s, continued)
            ]
            for s in lost
            for t in tenants_of({s})
        }
        fetched_after = {
            t: [
                round(f.wall - continued, 3)
                for f in group.emu.token_fetches(admin(t))
                if f.replica == name and continued <= f.wall < _reacquired(victim, s, continued)
            ]
            for s in lost
            for t in tenants_of({s})
        }
    print(
        f"\n{name} frozen {FROZEN:.0f} s with shards {sorted(lost)}: its tenants listening "
        f"elsewhere {taken_at - stopped_at:.1f} s after SIGSTOP; after SIGCONT, requests "
        f"for the lost shards {sent_after}, token fetches {fetched_after}; the waiting "
        f"gateway call answered {status}"
    )
    assert all(not calls for calls in sent_after.values()), sent_after
    assert all(not fetches for fetches in fetched_after.values()), fetched_after
    # The caller that waited on the fetch is told the tenant moved, not sent upstream.
    assert status == 503, status
