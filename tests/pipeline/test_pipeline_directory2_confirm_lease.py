"""Lease mode, two replicas (127.0.0.10 and 127.0.0.11) on RabbitMQ: a held directory
listing is confirmed by calling the replica that does *not* poll the tenant. The call is
forwarded to the holder of the tenant's shard (as authenticated presence tells), which
commits and publishes the listing; its problem comes back the same way; both replicas
audit the call (the holder naming the original caller and the hop). The real emulator."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from relay.app.settings import Settings
from relay.app.wiring import Running
from relay.core.shards import shard_of
from relay.emulator import Emulator
from relay.ops.admin import fingerprint
from relay.ops.metrics import Metrics, PrometheusObserver
from relay.runtime.directory2 import PollState
from tests.gateway.test_gateway_forwarding import free_port_on_both
from tests.pipeline.test_pipeline_directory2_confirm import AUTH, TOKEN
from tests.pipeline.test_pipeline_directory2_guard import (
    DEPLOYMENT_SECRET,
    EVERYONE,
    TENANT,
    company,
    lose_most_members,
    prefix,
    snapshot,
    tenant,
)
from tests.support import AMQP_URL, eventually, running_relay

__all__ = ["company", "prefix"]

pytestmark = pytest.mark.rabbitmq

REPLICAS = ("10", "11")


def settings(emu: Emulator, tmp_path: Path, prefix: str, replica: str, port: int) -> Settings:
    return Settings(
        journal={"path": tmp_path / f"{replica}.sqlite3", "synchronous": "normal"},
        tenants=[tenant(emu, directory_confirm_polls=0)],
        amqp={"enabled": True, "url": AMQP_URL, "exchange": prefix, "queue": prefix},
        sharding={"replica_id": replica, "prefix": prefix, "shards": 2, "heartbeat": 2,
                  "secret": DEPLOYMENT_SECRET},
        http={"host": f"127.0.0.{replica}", "port": port, "admin_token": TOKEN},
        gateway={"forward_timeout": 5, "peer_url": f"http://127.0.0.{{replica}}:{port}"},
        shutdown={"timeout": 3},
    )  # fmt: skip


@contextlib.asynccontextmanager
async def two_replicas(
    emu: Emulator, tmp_path: Path, prefix: str
) -> AsyncIterator[dict[str, Running]]:
    port = free_port_on_both()

    def own_metrics() -> PrometheusObserver:
        return PrometheusObserver(Metrics(CollectorRegistry()))

    async with (
        running_relay(settings(emu, tmp_path, prefix, "10", port), observer=own_metrics()) as a,
        running_relay(settings(emu, tmp_path, prefix, "11", port), observer=own_metrics()) as b,
    ):
        runs = {"10": a, "11": b}

        def one_shard_each_and_told() -> bool:
            leases = [run.service.runner.leases for run in runs.values()]  # type: ignore[union-attr]
            owned = [lease.owned for lease in leases]
            split = all(len(o) == 1 for o in owned) and owned[0] != owned[1]
            holder = {s: lease.replica_id for lease in leases for s in lease.owned}
            told = all(lease.holder_of(s) == h for lease in leases for s, h in holder.items())
            return split and told and all(lease.live == set(REPLICAS) for lease in leases)

        await eventually(one_shard_each_and_told, seconds=30, what="one shard each, presence")
        yield runs


def state(run: Running) -> PollState:
    assert run.service.pollers is not None
    return run.service.pollers.states[TENANT]


async def confirm(http: aiohttp.ClientSession, run: Running) -> tuple[int, dict[str, Any]]:
    assert run.server is not None
    where = run.server.url.rstrip("/") + f"/admin/v1/tenants/{TENANT}/directory/confirm-held"
    async with http.post(where, headers=AUTH) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_a_confirmation_sent_to_the_other_replica_is_applied_by_the_holder(
    company: Emulator, tmp_path: Path, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="relay.audit")
    async with two_replicas(company, tmp_path, prefix) as runs, aiohttp.ClientSession() as http:
        shard = shard_of(TENANT, 2)
        [holder] = [r for r, run in runs.items() if shard in run.service.runner.leases.owned]  # type: ignore[union-attr]
        [other] = [r for r in REPLICAS if r != holder]
        polls = state(runs[holder])
        await eventually(
            lambda: polls.polling and polls.members == 20 and polls.snapshot_owed is False,
            what="the holder polls the tenant, its listing published",
        )
        await lose_most_members(company)
        await eventually(lambda: polls.held is not None, what="the listing held")
        assert not state(runs[other]).polling

        status, answer = await confirm(http, runs[other])
        assert status == 200, answer
        assert answer["replica"] == holder and answer["tenant"] == TENANT
        assert answer["confirmed"]["deleted"] == 15 and answer["events"] == 16
        assert answer["directory"]["held"] is None and answer["directory"]["polling"] is True
        assert polls.held is None and polls.members == 5
        await eventually(lambda: polls.snapshot_owed is False, what="the listing published")
        kept = await snapshot(prefix)
        assert sorted(kept.members) == EVERYONE[:5], "the broker has the confirmed listing"
        # Again, through the other replica: the holder's problem comes back.
        status, problem = await confirm(http, runs[other])
        assert status == 409 and problem["type"].endswith(":nothing-held"), problem

    audit = [r for r in caplog.records if r.name == "relay.audit"]
    applied = [r for r in audit if getattr(r, "replica", None) == holder]
    forwarded = [r for r in audit if getattr(r, "replica", None) == other]
    assert [r.result.get("events") for r in applied] == [16, None]  # type: ignore[attr-defined]
    assert all(getattr(r, "via", None) == other for r in applied)
    assert all(getattr(r, "actor", None) == fingerprint(TOKEN) for r in audit)
    assert forwarded[0].result["forwarded_to"] == holder  # type: ignore[attr-defined]
    assert forwarded[1].result == {"problem": "nothing-held", "status": 409}  # type: ignore[attr-defined]
