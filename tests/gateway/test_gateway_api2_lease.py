"""Lease mode for a tenant of the second API: it is in the same shard space as every
other tenant (``shard_of(name, shards)``), so the replica holding its shard's lease
serves its gateway calls and fetches its tokens; the other replica forwards to it and
never fetches an application token of that tenant itself."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from relay.core.links import sign_sso_link
from relay.core.shards import shard_of
from relay.emulator import Emulator
from relay.ops.metrics import Metrics, PrometheusObserver
from tests.gateway.api2_support import (
    BOTH_KEY,
    BOTH_LINK_SECRET,
    CORPID,
    api2_tenant,
    both_apis_settings,
    openapi_tenant,
)
from tests.gateway.conftest import base, bearer
from tests.gateway.test_gateway_forwarding import free_port_on_both
from tests.gateway.test_gateway_forwarding_lease import prefix  # noqa: F401 - a fixture
from tests.support import AMQP_URL, DEPLOYMENT_SECRET, eventually, running_relay

pytestmark = pytest.mark.rabbitmq

REPLICAS = ("10", "11")  # replica id n serves on 127.0.0.n


async def test_the_api2_tenants_shard_owner_serves_it_and_the_other_forwards(
    emulator: Emulator,
    tmp_path: Path,
    http: aiohttp.ClientSession,
    prefix: str,  # noqa: F811 - the fixture imported above
) -> None:
    assert shard_of("orient", 2) != shard_of("acme", 2)
    port = free_port_on_both()

    def settings(replica: str) -> Any:
        return both_apis_settings(
            emulator,
            tmp_path / replica,
            journal={"path": str(tmp_path / f"{replica}.sqlite3"), "synchronous": "normal"},
            tenants=[openapi_tenant(emulator), api2_tenant(emulator)],
            clients=[
                {
                    "name": "both",
                    "key": BOTH_KEY,
                    "scopes": ["sso", "read", "write", "token"],
                    "link_secret": BOTH_LINK_SECRET,
                }
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
        shard = shard_of("orient", 2)

        def leases(replica: str) -> Any:
            return runs[replica].service.runner.leases  # type: ignore[union-attr]

        def split() -> bool:
            owned = [leases(r).owned for r in runs]
            return all(len(o) == 1 for o in owned) and owned[0] != owned[1]

        await eventually(split, seconds=30, what="each replica holding one shard")
        owner = next(r for r in runs if shard in leases(r).owned)
        other = next(r for r in runs if r != owner)
        await eventually(lambda: leases(other).holder_of(shard) == owner, what="presence")
        fetches = emulator.api2.token_fetches

        # Asked of the replica that does not hold orient's shard: the owner answers.
        async with http.get(
            f"{base(runs[other])}/v1/tenants/orient/users/amy@example.org",
            headers=bearer(BOTH_KEY),
        ) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["alias"] == "amy@example.org"
            assert f"exmail-relay-{other}" in resp.headers["Via"]
        async with http.post(
            f"{base(runs[other])}/v1/tenants/orient/openapi/department/list",
            json={},
            headers=bearer(BOTH_KEY),
        ) as resp:
            assert resp.status == 200, await resp.text()
            assert f"exmail-relay-{other}" in resp.headers["Via"]
        link = sign_sso_link(
            base_url=base(runs[other]),
            tenant="orient",
            email="amy@example.org",
            secret=BOTH_LINK_SECRET.encode(),
            expires_at=int(time.time()) + 300,
        )
        async with http.get(link, allow_redirects=False) as resp:
            assert resp.status == 302, await resp.text()
            assert "method=openapi" in resp.headers["Location"]
            assert f"exmail-relay-{other}" in resp.headers["Via"]
        # One fetch per application used, all by the owner: the forwarder took none.
        assert fetches[(CORPID, "directory")] == 1 and fetches[(CORPID, "sso")] == 1
        # The owner's gateway serves orient; the other does not (it would forward).
        assert runs[owner].gateway is not None and runs[owner].gateway.serves("orient")
        assert runs[other].gateway is not None and not runs[other].gateway.serves("orient")
