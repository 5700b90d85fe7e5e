"""An api2 tenant on the status surface of a running relay: ``/status.json``, the status
page (search, paging, failing first, the banner), readiness and the metrics, after real
signed callbacks sent over loopback by relay.emulator._callback, and after forged ones.

The status counts and ``exmail_relay_callbacks_total`` come from the same observer
reports, so they must agree; no Token, AES key or application secret may show."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from relay.app.wiring import Running
from relay.emulator import Emulator
from relay.emulator._callback import CallbackSender, CallbackTarget
from relay.ops.metrics import Metrics, PrometheusObserver
from relay.ops.page import tenant_state
from relay.runtime.status import CallbackStatus, TenantStatus
from tests.ops.conftest import get_json, settings, tenant
from tests.support import chromium, running_relay

TOKEN = "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo"
KEY = "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt"
CORPID = "ww1436e0e65a779aee"
APP_SECRETS = {"newmail_secret": "newmail-secret-0a1b2c", "contact_secret": "contact-9z8y7x"}
SECRETS = [TOKEN, KEY, *APP_SECRETS.values()]
CALLBACK_KEYS = [
    "last_at",
    "last_ok_at",
    "verified",
    "accepted",
    "duplicate",
    "ignored",
    "refused",
    "refused_in_a_row",
    "last_refused",
    "last_refused_at",
]


@dataclass
class Relay:
    running: Running
    url: str
    sender: CallbackSender
    target: CallbackTarget
    metrics: Metrics
    http: aiohttp.ClientSession

    async def status(self, query: str = "") -> dict[str, Any]:
        code, data = await get_json(self.http, self.url + "status.json" + query)
        assert code == 200, data
        return dict(data)

    async def page(self, query: str = "") -> str:
        async with self.http.get(self.url + query) as resp:
            assert resp.status == 200
            return await resp.text()

    async def newco(self) -> dict[str, Any]:
        rows = [t for t in (await self.status())["tenants"] if t["name"] == "newco"]
        assert len(rows) == 1
        return dict(rows[0])

    def metric_outcomes(self) -> dict[str, float]:
        found: dict[str, float] = {}
        for metric in self.metrics.callbacks.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total") and sample.labels["tenant"] == "newco":
                    found[sample.labels["outcome"]] = sample.value
        return found

    async def mail(self, target: CallbackTarget, mail_id: str) -> int | None:
        delivery = await self.sender.send_mail(
            target, mail_id=mail_id, to_user="lina@example.com",
            from_user='"Li" <li@example.com>', title="Quarterly report",
        )  # fmt: skip
        return delivery.attempts[-1].status


@pytest.fixture
async def relay(tmp_path: Path, emulator: Emulator) -> AsyncIterator[Relay]:
    api2 = {"name": "newco", "api": "api2", "corpid": CORPID, "callback_token": TOKEN,
            "encoding_aes_key": KEY, **APP_SECRETS}  # fmt: skip
    s = settings(
        tmp_path,
        tenants=[tenant(emulator), api2],
        console={"enabled": True},
        status={"show_content": False},
    )
    metrics = Metrics(CollectorRegistry())
    async with (
        running_relay(s, observer=PrometheusObserver(metrics)) as running,
        aiohttp.ClientSession() as http,
    ):
        assert running.server is not None
        url = running.server.url
        target = CallbackTarget(
            url=f"{url}callback/newco", token=TOKEN, encoding_aes_key=KEY, corpid=CORPID
        )
        yield Relay(
            running, url, CallbackSender(http, timeout=5.0, attempts=3), target, metrics, http
        )


def no_secret_in(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, "a secret is shown"


async def test_an_api2_tenant_before_any_callback(relay: Relay) -> None:
    row = await relay.newco()
    assert row["api"] == "api2" and row["state"] == "callback" and row["ver"] is None
    assert list(row["callbacks"]) == CALLBACK_KEYS
    assert CallbackStatus.json_keys() == set(CALLBACK_KEYS)
    assert row["callbacks"]["last_at"] is None and row["callbacks"]["refused"] == {}
    others = [t for t in (await relay.status())["tenants"] if t["name"] != "newco"]
    assert [(t["api"], t["callbacks"]) for t in others] == [("openapi", None)]
    assert "by callback, none yet" in await relay.page()


async def test_real_callbacks_are_counted_as_the_metrics_count_them(relay: Relay) -> None:
    verification = await relay.sender.verify_url(relay.target)
    assert verification.ok, verification
    assert await relay.mail(relay.target, "mail-0001") == 200
    assert await relay.mail(relay.target, "mail-0001") == 200  # a resend: duplicate
    assert await relay.mail(relay.target, "mail-0002") == 200
    row = await relay.newco()
    cb = row["callbacks"]
    assert (cb["verified"], cb["accepted"], cb["duplicate"], cb["ignored"]) == (1, 2, 1, 0)
    assert cb["refused"] == {} and cb["refused_in_a_row"] == 0 and cb["last_refused"] is None
    assert cb["last_at"] == cb["last_ok_at"] and cb["last_at"] is not None
    assert row["state"] == "callback" and row["last_event_at"] is not None
    assert row["events_by_type"] == {"exmail.mail.new": 2}
    assert relay.metric_outcomes() == {"verified": 1.0, "accepted": 2.0, "duplicate": 1.0}
    data = await relay.status()
    mine = [e for e in data["recent_events"] if e["tenant"] == "newco"]
    assert [e["type"] for e in mine] == ["exmail.mail.new"] * 2, "api2 events are listed"
    readiness = await get_json(relay.http, relay.url + "readyz")
    assert "tenant:newco" not in readiness[1]["ok"], "readiness does not list api2 tenants"
    page = await relay.page()
    assert re.search(r'<tr data-tenant="newco">.*?by callback, last \d{4}-', page, re.S)


async def test_forged_callbacks_make_the_tenant_refusing_and_failing_first(
    relay: Relay,
) -> None:
    forged = CallbackTarget(relay.target.url, "someOtherToken1", KEY, CORPID)
    assert await relay.mail(forged, "mail-0003") == 403  # 3 attempts, 3 refusals
    row = await relay.newco()
    assert row["state"] == "refusing"
    assert row["last_error"] == "refused: bad-signature" and row["failures"] == 3
    cb = row["callbacks"]
    assert cb["refused"] == {"bad-signature": 3} and cb["refused_in_a_row"] == 3
    assert cb["last_refused"] == "bad-signature" and cb["last_ok_at"] is None
    assert relay.metric_outcomes() == {"bad-signature": 3.0}
    # Another CorpID, signed with the right Token and key: refused too, counted apart.
    other_corp = CallbackTarget(relay.target.url, TOKEN, KEY, "wwanothercorp00001")
    assert await relay.mail(other_corp, "mail-0004") == 403
    cb = (await relay.newco())["callbacks"]
    assert cb["refused"] == {"bad-signature": 3, "wrong-corpid": 3}
    assert cb["last_refused"] == "wrong-corpid"

    # Failing first, on the page and in a paged status.json; the banner is red.
    paged = await relay.status("?per_page=1")
    assert [t["name"] for t in paged["tenants"]] == ["newco"]
    assert paged["tenants_page"]["states"]["refusing"] == 1
    page = await relay.page("?per_page=1")
    assert "Degraded" in page
    assert "refusing callbacks (6 in a row): wrong-corpid" in html.unescape(page)
    assert '<tr data-tenant="acme">' not in page
    searched = await relay.page("?q=NEW")
    assert '<tr data-tenant="newco">' in searched and '<tr data-tenant="acme">' not in searched
    readiness = await get_json(relay.http, relay.url + "readyz")
    assert "tenant:newco" not in readiness[1]["failing"], "refusals never make us unready"

    # The real sender again: served, the refusals stay counted and the last one shown.
    assert await relay.mail(relay.target, "mail-0005") == 200
    row = await relay.newco()
    assert row["state"] == "callback" and row["callbacks"]["refused_in_a_row"] == 0
    assert row["callbacks"]["accepted"] == 1 and row["last_error"] == "refused: wrong-corpid"
    assert relay.metric_outcomes() == {"bad-signature": 3.0, "wrong-corpid": 3.0, "accepted": 1.0}


async def test_no_secret_on_the_page_or_in_status_json(relay: Relay) -> None:
    assert (await relay.sender.verify_url(relay.target)).ok
    assert await relay.mail(relay.target, "mail-0006") == 200
    forged = CallbackTarget(relay.target.url, TOKEN, "A" * 43, CORPID)
    assert await relay.mail(forged, "mail-0007") in (400, 403)
    for query in ("", "?q=newco", "?per_page=1"):
        async with relay.http.get(relay.url + "status.json" + query) as resp:
            no_secret_in(await resp.text())
        no_secret_in(await relay.page(query))
    async with relay.http.get(relay.url + "metrics") as resp:
        no_secret_in(await resp.text())
    assert (await relay.newco())["callbacks"]["refused_in_a_row"] == 3


async def test_the_page_script_writes_the_same_api2_labels_as_the_server(
    tmp_path: Path, emulator: Emulator
) -> None:
    """Headless Chromium runs the refresh script over the page: its labels for a
    refusing and a served api2 tenant are the server's (relay.ops.page.tenant_state)."""
    api2 = {"api": "api2", "corpid": CORPID, "callback_token": TOKEN, "encoding_aes_key": KEY}
    s = settings(
        tmp_path,
        tenants=[{"name": "newco", **api2}, {"name": "goodco", **api2}],
        console={"enabled": True},
    )
    async with running_relay(s) as running, aiohttp.ClientSession() as http:
        assert running.server is not None
        url = running.server.url
        sender = CallbackSender(http, timeout=5.0, attempts=3)
        forged = CallbackTarget(f"{url}callback/newco", "someOtherToken1", KEY, CORPID)
        good = CallbackTarget(f"{url}callback/goodco", TOKEN, KEY, CORPID)
        await sender.send_mail(forged, mail_id="m1", to_user="a@b.c", from_user="d@b.c", title="t")
        await sender.send_mail(good, mail_id="m2", to_user="a@b.c", from_user="d@b.c", title="t")
        dom = await chromium("--virtual-time-budget=6000", "--dump-dom", url)
        _, data = await get_json(http, url + "status.json")
    assert re.search(r'<body data-refreshed="\d', dom), "the script ran"
    rows = {
        t["name"]: TenantStatus(**{**t, "callbacks": CallbackStatus(**t["callbacks"])})
        for t in data["tenants"]
    }
    for name, state in [("newco", "refusing"), ("goodco", "callback")]:
        row = re.search(rf'<tr data-tenant="{name}">.*?data-k="state" class="state {state}">'
                        r"(.*?)</td>", dom, re.S)  # fmt: skip
        assert row is not None, name
        label = html.unescape(row.group(1))
        assert label == tenant_state(rows[name])[1], name
    assert label.startswith("by callback, last 20")
    assert "Degraded" in dom
