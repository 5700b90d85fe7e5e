"""Forwarding between replicas (``[sharding] count = 2``, static): two in-process relays on
loopback, each serving one tenant; a request for the other one's tenant is forwarded
(``[gateway] peer_url``), or answered 421 naming the owner; a second hop is a loop (508)."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
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
    SECRET,
    WRITER_KEY,
    base,
    bearer,
    control,
    gateway_settings,
)
from tests.support import running_relay

ZETA_ADMIN = "admin@zeta.test"
ZED = "zed@zeta.test"


def free_port_on_both() -> int:
    """A port free on 127.0.0.10 and 127.0.0.11 (replica {index} is 127.0.0.1{index})."""
    for _ in range(50):
        with socket.socket() as one:
            one.bind(("127.0.0.10", 0))
            port: int = one.getsockname()[1]
            with socket.socket() as two:
                try:
                    two.bind(("127.0.0.11", port))
                except OSError:
                    continue
                return port
    raise AssertionError("no port free on both addresses")


async def zeta_and_a_port(http: aiohttp.ClientSession, emu: Emulator) -> int:
    """A second company on the emulator (tenant zeta) and a port free on both replicas."""
    await control(
        http,
        emu,
        "company",
        {"admin": ZETA_ADMIN, "key": SECRET, "domains": ["zeta.test"], "users": [{"alias": ZED}]},
    )
    return free_port_on_both()


def tenant_of(emu: Emulator) -> dict[str, Any]:
    """A tenant's settings on ``emu`` (name and client_id added by the caller)."""
    return {
        "client_secret": SECRET,
        "api_url": emu.api_url,
        "token_url": emu.token_url,
        "login_url": emu.login_url,
        "hold": 0.5,
        "request_timeout": 2,
    }


@contextlib.asynccontextmanager
async def two_replicas(
    emu: Emulator, tmp_path: Path, http: aiohttp.ClientSession, *, peers: bool
) -> AsyncIterator[tuple[Running, Running]]:
    assert shard_of("acme", 2) == 0 and shard_of("zeta", 2) == 1
    port = await zeta_and_a_port(http, emu)

    def settings(index: int) -> Any:
        tenant = tenant_of(emu)
        gateway: dict[str, Any] = {"forward_timeout": 5}
        if peers:
            gateway["peer_url"] = f"http://127.0.0.1{{index}}:{port}"
        return gateway_settings(
            emu,
            tmp_path / str(index),
            journal={"path": str(tmp_path / f"j{index}.sqlite3"), "synchronous": "normal"},
            tenants=[
                {"name": "acme", "client_id": ADMIN, **tenant},
                {"name": "zeta", "client_id": ZETA_ADMIN, **tenant},
            ],
            http={"host": f"127.0.0.1{index}", "port": port},
            sharding={"count": 2, "index": index},
            gateway=gateway,
        )

    def own_metrics() -> PrometheusObserver:  # each replica its own registry, as in pods
        return PrometheusObserver(Metrics(CollectorRegistry()))

    async with (
        running_relay(settings(0), observer=own_metrics()) as zero,
        running_relay(settings(1), observer=own_metrics()) as one,
    ):
        assert set(zero.gateway.tenants) == {"acme"}  # type: ignore[union-attr]
        assert set(one.gateway.tenants) == {"zeta"}  # type: ignore[union-attr]
        yield zero, one


async def api_calls(http: aiohttp.ClientSession, run: Running, client: str) -> float:
    async with http.get(f"{base(run)}/metrics") as resp:
        text = await resp.text()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("exmail_relay_api_requests_total{") and f'client="{client}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_a_request_for_the_other_replicas_tenant_is_forwarded(
    emulator: Emulator, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with two_replicas(emulator, tmp_path, http, peers=True) as (zero, one):
        before = await api_calls(http, one, "portal")
        async with http.get(
            f"{base(zero)}/v1/tenants/zeta/users/{ZED}", headers=bearer(PORTAL_KEY)
        ) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["alias"] == ZED
            assert "exmail-relay-0" in resp.headers["Via"]
        assert await api_calls(http, one, "portal") == before + 1  # the owner answered
        # A body goes through too, and the owner's answer comes back as is.
        async with http.post(
            f"{base(zero)}/v1/tenants/zeta/sso", json={"email": ZED}, headers=bearer(PORTAL_KEY)
        ) as resp:
            assert resp.status == 200
            assert "user=zed@zeta.test&" in (await resp.json())["url"]
        async with http.post(
            f"{base(zero)}/v1/tenants/zeta/openapi/user/get",
            json={"alias": "nobody@zeta.test"},
            headers=bearer(PORTAL_KEY),
        ) as resp:
            assert resp.status == 404
            assert resp.content_type == "application/problem+json"
            assert (await resp.json())["type"].endswith("upstream-not-found")
        # Checked here first: no key, or a client not allowed the tenant, is not forwarded.
        forwarded = await api_calls(http, one, "writer")
        async with http.get(f"{base(zero)}/v1/tenants/zeta/users/{ZED}") as resp:
            assert resp.status == 401
        async with http.get(
            f"{base(zero)}/v1/tenants/zeta/users/{ZED}", headers=bearer(WRITER_KEY)
        ) as resp:
            assert resp.status == 403  # writer: acme only
        assert await api_calls(http, one, "writer") == forwarded
        # Its own tenant is served, not forwarded.
        async with http.get(
            f"{base(one)}/v1/tenants/zeta/users/{ZED}", headers=bearer(PORTAL_KEY)
        ) as resp:
            assert resp.status == 200 and "Via" not in resp.headers


async def test_a_forwarded_request_is_never_forwarded_again(
    emulator: Emulator, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with two_replicas(emulator, tmp_path, http, peers=True) as (zero, _one):
        headers = {**bearer(PORTAL_KEY), "Via": "1.1 exmail-relay-1"}
        async with http.get(f"{base(zero)}/v1/tenants/zeta/users/{ZED}", headers=headers) as resp:
            assert resp.status == 508
            body = await resp.json()
        assert body["type"].endswith("forwarding-loop") and body["owner"] == "1"


async def test_without_a_peer_url_the_answer_is_421_naming_the_owner(
    emulator: Emulator, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with two_replicas(emulator, tmp_path, http, peers=False) as (zero, one):
        async with http.get(
            f"{base(one)}/v1/tenants/acme/users/alice@example.com", headers=bearer(PORTAL_KEY)
        ) as resp:
            assert resp.status == 421
            assert resp.content_type == "application/problem+json"
            body = await resp.json()
        assert body["owner"] == "0" and "replica 0" in body["detail"]
        async with http.get(
            f"{base(zero)}/v1/tenants/nobody/users/alice@example.com", headers=bearer(PORTAL_KEY)
        ) as resp:
            assert resp.status == 404  # a tenant nobody serves is still unknown


SECURITY_HEADERS = (
    "Cache-Control",
    "Referrer-Policy",
    "Content-Security-Policy",
    "X-Content-Type-Options",
)


async def test_a_forwarded_answer_keeps_the_security_headers_of_a_local_one(
    emulator: Emulator, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with two_replicas(emulator, tmp_path, http, peers=True) as (zero, one):

        def link(run: Running) -> str:
            return sign_sso_link(
                base_url=base(run),
                tenant="zeta",
                email=ZED,
                secret=PORTAL_LINK_SECRET.encode(),
                expires_at=int(time.time()) + 60,
            )

        answers = {}
        for name, run in (("local", one), ("forwarded", zero)):  # zeta is replica 1's
            async with http.get(link(run), allow_redirects=False) as resp:
                assert resp.status == 302, await resp.text()
                answers[name] = {h: resp.headers.get(h) for h in SECURITY_HEADERS}
                if name == "forwarded":
                    assert "exmail-relay-0" in resp.headers["Via"]
        assert answers["local"]["Referrer-Policy"] == "no-referrer"
        assert answers["forwarded"] == answers["local"]
