"""Metrics by route template, the status page's clients, the audit line, and no secret
(key, token, authkey, login ticket) in any log line or the status."""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from relay.emulator import Emulator
from relay.ops.metrics import Metrics, PrometheusObserver
from tests.gateway.conftest import (
    ALL_KEYS,
    LINK_SECRETS,
    PORTAL_KEY,
    SECRET,
    WRITER_KEY,
    aliases,
    base,
    bearer,
    gateway_settings,
)
from tests.gateway.test_gateway_auth import call
from tests.support import running_relay


async def test_metrics_status_audit_and_no_secrets_anywhere(
    emulator: Emulator,
    tmp_path: Path,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    observer = PrometheusObserver(Metrics(CollectorRegistry()))
    user = (await aliases(http, emulator))[0]
    async with running_relay(gateway_settings(emulator, tmp_path), observer=observer) as run:
        root = base(run)
        assert run.gateway is not None
        token = await run.gateway.tenants["acme"].client.token()
        await call(http, "GET", f"{root}/v1/tenants/acme/users/{user}", headers=bearer(PORTAL_KEY))
        await call(
            http, "GET", f"{root}/v1/tenants/acme/users/{user}/unread", headers=bearer(PORTAL_KEY)
        )
        status, _, sso = await call(
            http, "POST", f"{root}/v1/tenants/acme/sso", headers=bearer(PORTAL_KEY),
            json={"email": user},
        )  # fmt: skip
        assert status == 200
        ticket = parse_qs(urlsplit(sso["url"]).query)["ticket"][0]
        status, _, key = await call(
            http, "POST", f"{root}/v1/tenants/acme/openapi/user/get", headers=bearer(WRITER_KEY),
            json={"Alias": user},
        )  # fmt: skip
        assert status == 200
        await call(http, "GET", f"{root}/v1/tenants", headers=bearer("wrong-key-000000000000"))
        async with http.get(root + "/metrics") as resp:
            metrics = await resp.text()
        async with http.get(root + "/status.json") as resp:
            status_text = await resp.text()
            status_doc = await resp.json()
        async with http.get(root + "/") as resp:
            page = await resp.text()

    families = {f.name: f for f in text_string_to_metric_families(metrics)}
    calls = {
        (s.labels["client"], s.labels["route"], s.labels["code"]): s.value
        for s in families["exmail_relay_api_requests"].samples
        if s.name.endswith("_total")
    }
    assert calls[("portal", "/v1/tenants/{tenant}/users/{email}", "200")] == 1
    assert calls[("portal", "/v1/tenants/{tenant}/users/{email}/unread", "200")] == 1
    assert calls[("portal", "/v1/tenants/{tenant}/sso", "200")] == 1
    assert calls[("writer", "/v1/tenants/{tenant}/openapi/{operation}", "200")] == 1
    assert calls[("-", "/v1/tenants", "401")] == 1
    assert not any(user in route for _, route, _ in calls), "raw paths never become labels"
    seconds = {
        s.labels["route"]
        for s in families["exmail_relay_api_request_seconds"].samples
        if s.name.endswith("_count")
    }
    assert "/v1/tenants/{tenant}/sso" in seconds

    clients = {c["name"]: c for c in status_doc["clients"]}
    assert list(clients) == [
        "portal",
        "writer",
        "reader",
        "limited",
        "tokens",
        "kiosk",
        "zeta-portal",
    ]
    assert clients["portal"]["requests"] == 3 and clients["portal"]["last_used_at"] > 0
    assert clients["writer"]["requests"] == 1
    assert clients["reader"] == {
        "name": "reader", "tenants": ["zeta"], "scopes": ["read"], "last_used_at": None,
        "requests": 0,
    }  # fmt: skip
    assert 'data-client="portal"' in page

    audit = [r for r in caplog.records if r.name == "relay.gateway.audit"]
    assert len(audit) == 5
    assert {(r.client, r.status) for r in audit} == {  # type: ignore[attr-defined]
        ("portal", 200), ("writer", 200), ("-", 401),
    }  # fmt: skip
    logged = "\n".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records)
    for secret in (*ALL_KEYS, *LINK_SECRETS, SECRET, token, ticket):
        assert secret not in logged
        assert secret not in status_text
        assert secret not in page
        assert secret not in metrics
    assert key["Alias"] == user
