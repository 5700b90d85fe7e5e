"""Broker messages are input, not truth: a forged presence routes nothing anywhere.

The attack of issue 18, on the real RabbitMQ and a real relay: a process with publish
rights on the vhost holds the lease queue of one shard (so no relay can take it) and
publishes presence saying that ``127.0.0.1:<port>/#`` holds it. With ``peer_url =
"http://{replica}:8080"`` the relay used to forward a client's call for a tenant of that
shard to the attacker, ``Authorization`` header included, and hand the attacker's answer
back. Now the message is dropped (unsigned, or signed with another deployment's secret),
counted (metric, status), and the call answers 503 (nobody holds the shard) without any
request reaching the attacker."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from relay.core.envelope import HEADER, sign
from relay.core.presence import fingerprint
from relay.core.shards import shard_of
from relay.emulator import Emulator
from relay.ops.metrics import Metrics, PrometheusObserver
from tests.gateway.conftest import ADMIN, PORTAL_KEY, base, bearer, gateway_settings
from tests.gateway.test_gateway_forwarding import ZED, ZETA_ADMIN, tenant_of, zeta_and_a_port
from tests.support import AMQP_URL, DEPLOYMENT_SECRET, eventually, running_relay

pytestmark = pytest.mark.rabbitmq

SHARDS = 2
ANOTHER_DEPLOYMENTS_SECRET = "another-deployment-secret-4242"


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = f"test.forged.{uuid.uuid4().hex[:10]}"
    yield name
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(name)
        await channel.queue_delete(f"{name}.checkpoints")
        await channel.exchange_delete(name)
        await channel.exchange_delete(f"{name}.presence")


class Attacker:
    """An HTTP server on 127.0.0.1 that records every request it gets and answers ``{}``."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def _any(self, request: web.Request) -> web.Response:
        self.requests.append({"path": request.path_qs, **dict(request.headers)})
        return web.json_response({})

    async def __aenter__(self) -> Attacker:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._any)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


async def test_a_forged_presence_routes_nothing_anywhere_and_is_counted(
    emulator: Emulator, tmp_path: Path, http: aiohttp.ClientSession, prefix: str
) -> None:
    port = await zeta_and_a_port(http, emulator)
    zeta_shard = shard_of("zeta", SHARDS)
    assert shard_of("acme", SHARDS) != zeta_shard
    metrics = Metrics(CollectorRegistry())
    settings = gateway_settings(
        emulator,
        tmp_path,
        journal={"path": str(tmp_path / "r1.sqlite3"), "synchronous": "normal"},
        tenants=[
            {"name": "acme", "client_id": ADMIN, **tenant_of(emulator)},
            {"name": "zeta", "client_id": ZETA_ADMIN, **tenant_of(emulator)},
        ],
        amqp={"enabled": True, "url": AMQP_URL, "exchange": prefix, "queue": prefix},
        sharding={
            "replica_id": "r1",
            "prefix": prefix,
            "shards": SHARDS,
            "heartbeat": 2,
            "secret": DEPLOYMENT_SECRET,
        },
        http={"host": "127.0.0.1", "port": 0},
        # The template of the issue: the replica id becomes the host.
        gateway={"forward_timeout": 5, "peer_url": f"http://{{replica}}:{port}"},
    )
    squatter = await aio_pika.connect(AMQP_URL)
    async with Attacker() as attacker, squatter:
        channel = await squatter.channel()
        # Holds zeta's lease queue before the relay starts: no relay can take the shard.
        await channel.declare_queue(f"{prefix}.lease.{zeta_shard}", exclusive=True)
        exchange = await channel.declare_exchange(
            f"{prefix}.presence", aio_pika.ExchangeType.FANOUT, durable=True
        )
        forged = f"127.0.0.1:{attacker.port}/#"
        # Everything the attacker can know, the fingerprint included (tenant names).
        body = json.dumps(
            {
                "replica": forged,
                "shards": SHARDS,
                "owned": [zeta_shard],
                "leaving": False,
                "fingerprint": fingerprint(shards=SHARDS, prefix=prefix, tenants=["acme", "zeta"]),
            }
        ).encode()

        async def publish(signed_with: str | None) -> None:
            headers = {}
            if signed_with is not None:
                at = int(time.time() * 1000)
                headers[HEADER] = sign("presence", body, secret=signed_with.encode(), at_ms=at)
            await exchange.publish(aio_pika.Message(body, headers=headers), routing_key="")

        async with running_relay(settings, observer=PrometheusObserver(metrics)) as run:
            leases = run.service.runner.leases  # type: ignore[union-attr]
            await eventually(lambda: leases.owned == {shard_of("acme", SHARDS)}, what="acme")

            async def call_zeta() -> int:
                async with http.get(
                    f"{base(run)}/v1/tenants/zeta/users/{ZED}", headers=bearer(PORTAL_KEY)
                ) as resp:
                    await resp.read()
                    return resp.status

            def refused(reason: str) -> float:
                sample = metrics.registry.get_sample_value(
                    "exmail_relay_broker_messages_refused_total",
                    {"kind": "presence", "reason": reason},
                )
                return sample or 0.0

            for signed_with, reason in (
                (None, "unsigned"),
                (ANOTHER_DEPLOYMENTS_SECRET, "bad_signature"),
            ):
                for _ in range(10):  # several ticks' worth, each call racing a fresh message
                    await publish(signed_with)
                    await asyncio.sleep(0.1)
                    assert leases.holder_of(zeta_shard) is None
                    assert forged not in leases.live
                    assert await call_zeta() == 503  # tenant-moving: nobody holds it
                await eventually(lambda r=reason: refused(r) >= 10, what=f"{reason} counted")
            assert attacker.requests == [], "nothing reached the attacker"

            status = (await run.service.status()).sharding
            assert status is not None
            assert status.refused["unsigned"] >= 10 and status.refused["bad signature"] >= 10
            assert status.live == ("r1",)
            # Signed with another secret on our prefix: another deployment, said loudly.
            health = await run.service.health()
            assert "another deployment uses prefix" in health.failing["leases"]
            async with http.get(f"{base(run)}/readyz") as resp:
                assert resp.status == 503
                assert "another deployment" in (await resp.json())["failing"]["leases"]
            async with http.get(f"{base(run)}/") as resp:
                page = await resp.text()
            assert "presence messages refused" in page and "another deployment uses" in page
            async with http.get(f"{base(run)}/metrics") as resp:
                exported = await resp.text()
            assert (
                'exmail_relay_broker_messages_refused_total{kind="presence",reason="unsigned"}'
                in (exported)
            )
            assert DEPLOYMENT_SECRET not in page + exported
