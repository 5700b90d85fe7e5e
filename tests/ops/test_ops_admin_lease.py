"""The admin API in lease mode, two replicas (127.0.0.10 and 127.0.0.11) on RabbitMQ:
a list called on either gathers both journals' dead letters, each labelled by replica;
a replay sent to one replica reaches the replica whose journal holds the letter; an
endpoint switch applies to both; the shards name the holders presence tells; and the
holder writes its own audit line naming the original caller and the hop."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from relay.app.wiring import Running
from relay.emulator import Emulator
from relay.ops.admin import fingerprint
from relay.ops.metrics import Metrics, PrometheusObserver
from tests.gateway.conftest import ADMIN, gateway_settings
from tests.gateway.test_gateway_forwarding import ZETA_ADMIN, tenant_of, zeta_and_a_port
from tests.ops.test_ops_admin import AUTH, BAD, TOKEN
from tests.pipeline.test_pipeline_journal import mail, to
from tests.support import AMQP_URL, DEPLOYMENT_SECRET, eventually, running_relay
from tests.webhook.conftest import Answer, Receiver, hook, receiver

__all__ = ["receiver"]

pytestmark = pytest.mark.rabbitmq

REPLICAS = ("10", "11")


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = f"test.adminlease.{uuid.uuid4().hex[:10]}"
    yield name
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(name)
        for shard in range(2):
            await channel.queue_delete(f"{name}.checkpoint.{shard}")
        await channel.exchange_delete(name)
        await channel.exchange_delete(f"{name}.presence")


@contextlib.asynccontextmanager
async def two_replicas(
    emu: Emulator, tmp_path: Path, http: aiohttp.ClientSession, prefix: str, rec: Receiver
) -> AsyncIterator[dict[str, Running]]:
    port = await zeta_and_a_port(http, emu)

    def settings(replica: str) -> Any:
        tenant = tenant_of(emu)
        return gateway_settings(
            emu,
            tmp_path / replica,
            journal={"path": str(tmp_path / f"{replica}.sqlite3"), "synchronous": "normal"},
            tenants=[
                {"name": "acme", "client_id": ADMIN, **tenant},
                {"name": "zeta", "client_id": ZETA_ADMIN, **tenant},
            ],
            amqp={"enabled": True, "url": AMQP_URL, "exchange": prefix, "queue": prefix},
            sharding={
                "replica_id": replica,
                "prefix": prefix,
                "shards": 2,
                "heartbeat": 2,
                "secret": DEPLOYMENT_SECRET,
            },
            http={"host": f"127.0.0.{replica}", "port": port, "admin_token": TOKEN},
            gateway={"forward_timeout": 5, "peer_url": f"http://127.0.0.{{replica}}:{port}"},
            webhooks=[
                hook(rec, "bad", retry_schedule=[0.05], types=["nothing.routed.here"]),
                hook(rec, "good", types=["nothing.routed.here"]),
            ],
        )

    def own_metrics() -> PrometheusObserver:
        return PrometheusObserver(Metrics(CollectorRegistry()))

    async with (
        running_relay(settings(REPLICAS[0]), observer=own_metrics()) as a,
        running_relay(settings(REPLICAS[1]), observer=own_metrics()) as b,
    ):
        runs = {REPLICAS[0]: a, REPLICAS[1]: b}

        def everyone_knows_everyone() -> bool:
            leases = [run.service.runner.leases for run in runs.values()]  # type: ignore[union-attr]
            owned = [lease.owned for lease in leases]
            split = all(len(o) == 1 for o in owned) and owned[0] != owned[1]
            holder = {s: lease.replica_id for lease in leases for s in lease.owned}
            told = all(lease.holder_of(s) == h for lease in leases for s, h in holder.items())
            return split and told and all(lease.live == set(REPLICAS) for lease in leases)

        await eventually(everyone_knows_everyone, seconds=30, what="one shard each, presence")
        yield runs


def url(run: Running, path: str) -> str:
    assert run.server is not None
    return run.server.url.rstrip("/") + "/admin/v1/" + path


async def call(
    http: aiohttp.ClientSession, run: Running, method: str, path: str, **kw: Any
) -> tuple[int, Any]:
    async with http.request(method, url(run, path), headers=AUTH, **kw) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_lists_gather_both_replicas_and_a_replay_reaches_the_holder(
    emulator: Emulator,
    tmp_path: Path,
    http: aiohttp.ClientSession,
    prefix: str,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="relay.audit")
    receiver.script("bad", default=Answer(500))
    async with two_replicas(emulator, tmp_path, http, prefix, receiver) as runs:
        ten, eleven = runs[REPLICAS[0]], runs[REPLICAS[1]]
        await ten.service.journal.append("acme", [mail(1), mail(2)], route=to(BAD))
        await eleven.service.journal.append("zeta", [mail(3, "zeta")], route=to(BAD))

        async def all_dead() -> bool:
            status, body = await call(http, ten, "GET", "deadletters")
            return status == 200 and len(body["items"]) == 3

        await eventually(all_dead, seconds=30, what="3 dead letters over two journals")
        # Either replica answers the same list, each letter labelled by its holder.
        for run in (ten, eleven):
            status, body = await call(http, run, "GET", "deadletters")
            assert status == 200 and body["complete"] is True
            holders = {i["event_id"]: i["replica"] for i in body["items"]}
            assert sorted(holders.values()) == ["10", "10", "11"]
            assert {p["replica"] for p in body["replicas"]} == set(REPLICAS)
        # Paged one per replica: two pages, every letter once.
        _, first = await call(http, ten, "GET", "deadletters?limit=1")
        assert len(first["items"]) == 2 and first["next"] is not None
        _, second = await call(http, ten, "GET", f"deadletters?limit=1&cursor={first['next']}")
        assert [i["replica"] for i in second["items"]] == ["10"] and second["next"] is None
        # Replay zeta's letter, asking replica 10: replica 11's journal holds it.
        receiver.defaults["bad"] = Answer(200)
        zetas = next(e for e, r in holders.items() if r == "11")
        status, body = await call(
            http, ten, "POST", "deadletters/replay", json={"event_id": zetas, "endpoint": "bad"}
        )
        assert status == 200, body
        parts = {p["replica"]: p for p in body["replicas"]}
        assert parts["11"]["replayed"] == 1 and parts["10"]["replayed"] == 0
        (delivered,) = await receiver.wait_for("bad", 1, status=200)
        assert delivered.headers["webhook-id"] == zetas
        # ... and named explicitly: only that replica is asked.
        status, body = await call(
            http, eleven, "POST", "deadletters/drop", json={"replica": "10", "tenant": "acme"}
        )
        assert status == 200 and body["dropped"] == 2
        assert [p["replica"] for p in body["replicas"]] == ["10"]
        assert await ten.service.journal.dead_letters() == []
        # An endpoint switch reaches both journals.
        status, body = await call(http, eleven, "POST", "endpoints/good/disable")
        assert status == 200 and body["complete"] is True
        for run in runs.values():
            assert await run.service.journal.disabled("webhook:good") is not None
        _, listed = await call(http, ten, "GET", "endpoints")
        good = [i for i in listed["items"] if i["endpoint"] == "good"]
        assert sorted(i["replica"] for i in good) == ["10", "11"]
        assert all(i["disabled"] for i in good)
        # The journal check covers both files.
        _, check = await call(http, ten, "GET", "journal/check")
        assert check["ok"] is True and len(check["items"]) == 2
        # Shards: each one's holder, as presence tells, from either replica.
        for run in runs.values():
            _, shards = await call(http, run, "GET", "shards")
            assert shards["mode"] == "lease" and shards["live"] == ["10", "11"]
            holders_by_shard = {i["shard"]: i["holder"] for i in shards["items"]}
            for replica, r in runs.items():
                for shard in r.service.runner.leases.owned:  # type: ignore[union-attr]
                    assert holders_by_shard[shard] == replica
        # The holder audited the forwarded replay: the original caller, through 10.
        hops = [
            r
            for r in caplog.records
            if r.name == "relay.audit"
            and getattr(r, "replica", None) == "11"
            and "replay" in getattr(r, "route", "")
        ]
        assert hops and all(getattr(r, "via", None) == "10" for r in hops)
        assert all(getattr(r, "actor", None) == fingerprint(TOKEN) for r in hops)
        assert hops[0].result == {"replayed": 1, "skipped": []}  # type: ignore[attr-defined]
