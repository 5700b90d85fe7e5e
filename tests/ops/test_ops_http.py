"""The ops HTTP surface against a running relay: metrics, probes, readiness flips, auth."""

from __future__ import annotations

import asyncio
import base64
import shutil
import subprocess
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from relay.emulator import Emulator
from tests.ops.conftest import BROKER, Control, eventually, get_json, settings, tenant
from tests.support import TcpProxy, running_relay

DOCUMENTED = {
    "exmail_relay_build_info",
    "exmail_relay_listen_requests",
    "exmail_relay_listener_state",
    "exmail_relay_events_ingested",
    "exmail_relay_journal_events",
    "exmail_relay_journal_backlog_events",
    "exmail_relay_backpressure",
    "exmail_relay_sink_backlog",
    "exmail_relay_sink_oldest_pending_seconds",
    "exmail_relay_deliveries",
    "exmail_relay_delivery_latency_seconds",
    "exmail_relay_token_fetches",
    "exmail_relay_checkpoint_ver",
    "exmail_relay_api_requests",
    "exmail_relay_api_request_seconds",
    "exmail_relay_shard_acquisitions",
    "exmail_relay_shard_releases",
    "exmail_relay_owned_shards",
    "exmail_relay_takeover_gap_seconds",
    "process_resident_memory_bytes",
    "process_cpu_seconds",
    "process_open_fds",
    "process_start_time_seconds",
}


async def test_metrics_parse_and_hold_documented_families(
    tmp_path: Path, emulator: Emulator, control: Control, http: aiohttp.ClientSession
) -> None:
    s = settings(tmp_path, tenants=[tenant(emulator)], console={"enabled": True})
    async with running_relay(s) as running:
        url = running.server.url if running.server else ""
        alias = (await control.aliases())[0]

        async def delivered() -> bool:
            _, data = await get_json(http, url + "status.json")
            return bool(data["sinks"][0]["delivered"] >= 1)

        await control.mail(alias)
        await eventually(delivered, what="console delivery")
        async with http.get(url + "metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
            text = await resp.text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    missing = DOCUMENTED - set(families)
    assert not missing, missing
    build = families["exmail_relay_build_info"].samples[0]
    assert build.name == "exmail_relay_build_info" and build.labels["version"]
    ingested = [
        s for s in families["exmail_relay_events_ingested"].samples if s.name.endswith("_total")
    ]
    assert any(s.labels["type"] == "exmail.mail.new" and s.value >= 1 for s in ingested)
    assert all(name.startswith(("exmail_relay_", "process_", "python_")) for name in families)
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is missing: .ci/test installs Debian's 'prometheus'"
    lint = await asyncio.to_thread(
        subprocess.run,
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


async def test_readyz_follows_the_broker(
    tmp_path: Path,
    emulator: Emulator,
    proxy: TcpProxy,
    amqp_names: tuple[str, str],
    http: aiohttp.ClientSession,
) -> None:
    exchange, queue = amqp_names
    amqp = {
        "enabled": True,
        "url": f"amqp://guest:guest@127.0.0.1:{proxy.port}/",
        "exchange": exchange,
        "queue": queue,
        "retry_max": 1,
    }
    # The sink's link only: lease mode (whose lease link this proxy would cut as well)
    # has its readiness tests in tests/runtime/test_runtime_ownership.py.
    s = settings(tmp_path, tenants=[tenant(emulator)], amqp=amqp, sharding={"mode": "static"})
    async with running_relay(s) as running:
        url = running.server.url if running.server else ""

        async def ready(expected: int) -> bool:
            status, _ = await get_json(http, url + "readyz")
            return status == expected

        await eventually(lambda: ready(200), what="ready")
        status, body = await get_json(http, url + "readyz")
        assert body["failing"] == {} and "sink:amqp" in body["ok"] and "tenant:acme" in body["ok"]

        await proxy.stop()
        await eventually(lambda: ready(503), what="not ready after broker loss")
        status, body = await get_json(http, url + "readyz")
        assert status == 503
        assert body["failing"]["sink:amqp"].startswith("not connected")
        assert "tenant:acme" in body["ok"]
        # Liveness never depends on the broker.
        status, live = await get_json(http, url + "livez")
        assert status == 200 and live["alive"] is True

        await proxy.start()
        await eventually(lambda: ready(200), seconds=40, what="ready after broker returns")


async def test_readyz_names_a_tenant_with_bad_credentials(
    tmp_path: Path, emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    s = settings(
        tmp_path,
        tenants=[
            tenant(emulator),
            tenant(emulator, name="broken", secret="wrong-secret", client_id="admin2@example.com"),
        ],
        console={"enabled": True},
    )
    async with running_relay(s) as running:
        url = running.server.url if running.server else ""

        async def failing() -> bool:
            status, body = await get_json(http, url + "readyz")
            return status == 503 and "tenant:broken" in body["failing"]

        await eventually(failing, what="tenant failed")
        _, body = await get_json(http, url + "readyz")
        assert body["failing"]["tenant:broken"].startswith("failed: ")
        assert "tenant:acme" in body["ok"]
        assert "wrong-secret" not in str(body)
        status, live = await get_json(http, url + "livez")
        assert status == 200 and live["alive"]
        _, data = await get_json(http, url + "status.json")
        broken = next(t for t in data["tenants"] if t["name"] == "broken")
        assert broken["state"] == "failed" and broken["last_error"]


async def test_auth_protects_page_and_status_not_probes(
    tmp_path: Path, emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    s = settings(
        tmp_path,
        tenants=[tenant(emulator)],
        console={"enabled": True},
        http={
            "port": 0,
            "auth_token": "tok-abcdef-123",
            "basic_user": "ops",
            "basic_password": "pw-xyz-789",
        },
    )
    async with running_relay(s) as running:
        url = running.server.url if running.server else ""
        for path in ("", "status.json"):
            async with http.get(url + path) as resp:
                assert resp.status == 401
                assert resp.headers["WWW-Authenticate"].startswith("Basic")
            async with http.get(url + path, headers={"Authorization": "Bearer nope"}) as resp:
                assert resp.status == 401
            bad = base64.b64encode(b"ops:wrong").decode()
            async with http.get(url + path, headers={"Authorization": f"Basic {bad}"}) as resp:
                assert resp.status == 401
            async with http.get(
                url + path, headers={"Authorization": "Bearer tok-abcdef-123"}
            ) as resp:
                assert resp.status == 200
            good = base64.b64encode(b"ops:pw-xyz-789").decode()
            async with http.get(url + path, headers={"Authorization": f"Basic {good}"}) as resp:
                assert resp.status == 200
        for path in ("livez", "metrics"):
            async with http.get(url + path) as resp:
                assert resp.status == 200
        async with http.get(url + "readyz") as resp:
            assert resp.status in (200, 503)


async def test_protect_probes_closes_probes_too(
    tmp_path: Path, emulator: Emulator, http: aiohttp.ClientSession
) -> None:
    s = settings(
        tmp_path,
        tenants=[tenant(emulator)],
        http={"port": 0, "auth_token": "tok-abcdef-123", "protect_probes": True},
    )
    async with running_relay(s) as running:
        url = running.server.url if running.server else ""
        for path in ("livez", "readyz", "metrics"):
            async with http.get(url + path) as resp:
                assert resp.status == 401
        auth = {"Authorization": "Bearer tok-abcdef-123"}
        async with http.get(url + "livez", headers=auth) as resp:
            assert resp.status == 200


@pytest.mark.rabbitmq
async def test_broker_reachable_directly() -> None:
    # Guards the other tests' premise: the broker the proxy forwards to is up.
    import aio_pika

    connection = await asyncio.wait_for(aio_pika.connect(BROKER, timeout=5), 10)
    assert not connection.is_closed
    await connection.close()
