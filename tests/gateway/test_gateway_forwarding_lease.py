"""Forwarding in lease mode: the owner of a tenant is the replica holding its shard's
lease, found through presence (``LeaseManager.holder_of``); ``[gateway] peer_url`` with
``{replica}`` says where it answers. A replica never calls Exmail for a tenant it does
not own (it would take the owner's token: one token per account)."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from relay.app.wiring import Running
from relay.core.links import sign_sso_link
from relay.core.shards import shard_of
from relay.emulator import Emulator
from relay.ops.metrics import Metrics, PrometheusObserver
from tests.gateway.conftest import (
    ADMIN,
    PORTAL_KEY,
    PORTAL_LINK_SECRET,
    base,
    bearer,
    gateway_settings,
)
from tests.gateway.test_gateway_forwarding import ZED, ZETA_ADMIN, tenant_of, zeta_and_a_port
from tests.support import AMQP_URL, DEPLOYMENT_SECRET, eventually, running_relay

pytestmark = pytest.mark.rabbitmq

REPLICAS = ("10", "11")  # replica id n serves on 127.0.0.n (ids are DNS labels)


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = f"test.gwlease.{uuid.uuid4().hex[:10]}"
    yield name
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(name)
        for shard in range(2):  # the checkpoint queues
            await channel.queue_delete(f"{name}.checkpoint.{shard}")
        await channel.exchange_delete(name)
        await channel.exchange_delete(f"{name}.presence")


@contextlib.asynccontextmanager
async def two_lease_replicas(
    emu: Emulator, tmp_path: Path, http: aiohttp.ClientSession, prefix: str
) -> AsyncIterator[dict[str, Running]]:
    assert shard_of("acme", 2) != shard_of("zeta", 2)
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
            http={"host": f"127.0.0.{replica}", "port": port},
            gateway={"forward_timeout": 5, "peer_url": f"http://127.0.0.{{replica}}:{port}"},
        )

    def own_metrics() -> PrometheusObserver:
        return PrometheusObserver(Metrics(CollectorRegistry()))

    async with (
        running_relay(settings(REPLICAS[0]), observer=own_metrics()) as a,
        running_relay(settings(REPLICAS[1]), observer=own_metrics()) as b,
    ):
        runs = {REPLICAS[0]: a, REPLICAS[1]: b}

        def split() -> bool:
            owned = [run.service.runner.leases.owned for run in runs.values()]  # type: ignore[union-attr]
            return all(len(o) == 1 for o in owned) and owned[0] != owned[1]

        await eventually(split, seconds=30, what="each replica holding one shard")
        yield runs


async def test_a_request_goes_to_the_lease_holder_and_only_it_takes_the_token(
    emulator: Emulator, tmp_path: Path, http: aiohttp.ClientSession, prefix: str
) -> None:
    async with two_lease_replicas(emulator, tmp_path, http, prefix) as runs:
        zeta_shard = shard_of("zeta", 2)
        owner = next(
            r
            for r, run in runs.items()
            if zeta_shard in run.service.runner.leases.owned  # type: ignore[union-attr]
        )
        other = next(r for r in runs if r != owner)
        leases = runs[other].service.runner.leases  # type: ignore[union-attr]
        # Presence tells the other who holds zeta's shard (until then: 503, try again).
        await eventually(lambda: leases.holder_of(zeta_shard) == owner, what="presence")
        await eventually(
            lambda: emulator.token_fetches(ZETA_ADMIN), what="the owner's listener took the token"
        )
        fetches = len(emulator.token_fetches(ZETA_ADMIN))
        # Sent to the replica that does NOT hold zeta's lease: forwarded to the holder.
        async with http.get(
            f"{base(runs[other])}/v1/tenants/zeta/users/{ZED}", headers=bearer(PORTAL_KEY)
        ) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["alias"] == ZED
            assert f"exmail-relay-{other}" in resp.headers["Via"]
        async with http.post(
            f"{base(runs[other])}/v1/tenants/zeta/sso",
            json={"email": ZED},
            headers=bearer(PORTAL_KEY),
        ) as resp:
            assert resp.status == 200
        # A signed SSO link followed on the replica that does not hold zeta: the owner
        # answers (its token, its single-use memory), and the browser is redirected.
        link = sign_sso_link(
            base_url=base(runs[other]),
            tenant="zeta",
            email=ZED,
            secret=PORTAL_LINK_SECRET.encode(),
            expires_at=int(time.time()) + 300,
        )
        async with http.get(link, allow_redirects=False) as resp:
            assert resp.status == 302, await resp.text()
            assert resp.headers["Location"].startswith(emulator.login_url)
            assert f"exmail-relay-{other}" in resp.headers["Via"]
        # Nobody took the token from the owner: no fetch beyond the listener's first.
        assert len(emulator.token_fetches(ZETA_ADMIN)) == fetches == 1
