"""The status page: a pure render of a hand-built Status, and the live page in headless
Chromium."""

from __future__ import annotations

import html
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from relay.emulator import Emulator
from relay.ops.page import render_status_page
from relay.ops.page_script import _bind_fields
from relay.runtime.status import (
    JournalStatus,
    OrphanStatus,
    PruneStatus,
    RecentEvent,
    ShardingStatus,
    SinkStatus,
    Status,
    TenantStatus,
)
from tests.ops.conftest import Control, eventually, get_json, settings, tenant
from tests.support import chromium, running_relay


def sample(**overrides: Any) -> Status:
    """A hand-built status: one tenant backing off, one sink down, one event."""
    status = Status(
        now=1_800_000_000.0,
        started_at=1_799_999_000.0,
        stopping=False,
        show_content=False,
        tenants=(
            TenantStatus(
                name="acme",
                state="backoff",
                ver=42,
                last_event_at=1_799_999_990.0,
                last_error="listen: <script>alert(1)</script> 503",
                last_error_at=1_799_999_995.0,
                failures=3,
                events_by_type={"exmail.mail.new": 5, "exmail.mail.unread": 2},
            ),
        ),
        sinks=(
            SinkStatus(
                name="amqp",
                connected=False,
                disabled=None,
                in_flight=0,
                backlog=17,
                oldest_pending_age=12.345,
                delivered=100,
                failed=4,
                dead=1,
                last_error="cannot connect",
            ),
        ),
        journal=JournalStatus(
            path="/var/lib/relay/j.sqlite3",
            events=120,
            backlog_events=17,
            backlog_bytes=9000,
            max_events=1000,
            max_bytes=1 << 20,
            file_bytes=65536,
            backpressure=None,
            retention_seconds=86400.0,
            last_prune=None,
        ),
        recent_events=(
            RecentEvent(time=1_799_999_990.0, tenant="acme", type="exmail.mail.new", id="x1"),
        ),
    )
    return replace(status, **overrides)


def test_render_is_pure_complete_and_escaped() -> None:
    status = sample()
    page = render_status_page(status)
    assert page == render_status_page(sample())
    assert "<script>alert(1)</script>" not in page
    assert html.escape("<script>alert(1)</script>") in page
    assert "backing off: listen:" in page
    for figure in ("17", "12.3 s", "100", ">4<", ">1<", "mail.new 5, mail.unread 2", "42"):
        assert figure in page, figure
    assert "not connected: cannot connect" in page
    assert "17 / 1000 events" in page and "not pruned yet" in page
    assert "Degraded" in page
    # Self-contained: no external asset of any kind, and no page reload.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "location.reload" not in page and "status.json" in page
    assert '<th id="events-subject">' not in page


def test_subjects_only_with_show_content() -> None:
    event = RecentEvent(time=1.0, tenant="acme", type="exmail.mail.new", id="x", subject="s@x")
    page = render_status_page(sample(show_content=True, recent_events=(event,)))
    assert 'id="events-subject"' in page and "s@x" in page


def test_failed_and_disabled_say_why() -> None:
    tenants = (replace(sample().tenants[0], state="failed", last_error="bad credentials"),)
    sinks = (replace(sample().sinks[0], disabled="410 Gone"),)
    page = render_status_page(sample(tenants=tenants, sinks=sinks))
    assert "failed: bad credentials" in page and "disabled: 410 Gone" in page


def test_a_sink_blocked_by_a_resource_alarm_says_why_and_degrades_the_banner() -> None:
    block = {"reason": "low on disk", "since": 1_799_999_990.0}
    sinks = (replace(sample().sinks[0], connected=True, last_error=None, blocked=block),)
    tenants = (replace(sample().tenants[0], state="connected", last_error=None),)
    sharding = ShardingStatus(
        mode="lease",
        replica="r1",
        shards=16,
        owned=(3,),
        live=("r1",),
        standby=False,
        blocked={"leases": block},
    )
    page = render_status_page(sample(sinks=sinks, tenants=tenants, sharding=sharding))
    assert (
        '<td data-k="state" class="state blocked">blocked by RabbitMQ: low on disk (resource alarm)'
        " since 2027-01-15 07:59:50 UTC</td>"
    ) in page
    assert '<div id="banner" class="bad">Degraded</div>' in page
    assert "; leases blocked by RabbitMQ: low on disk" in page
    assert '"blocked by RabbitMQ: " + k.blocked.reason' in page, "the live script too"


def test_a_tenant_waiting_for_its_turn_says_so_not_an_error() -> None:
    tenants = (replace(sample().tenants[0], state="waiting", last_error=None),)
    page = render_status_page(sample(tenants=tenants))
    assert "waiting for its turn (takeover_rate)" in page
    assert 'waiting: "waiting for its turn (takeover_rate)"' in page, "the live script too"


def test_healthy_pruned_and_stopping_banners() -> None:
    healthy = sample(
        tenants=(replace(sample().tenants[0], state="connected", last_error=None),),
        sinks=(replace(sample().sinks[0], connected=True, last_error=None),),
        journal=replace(sample().journal, last_prune=PruneStatus(at=1_799_999_999.0, events=7)),
    )
    page = render_status_page(healthy)
    assert '<div id="banner" class="ok">All parts healthy</div>' in page
    assert "last pruned 2027-01-15 07:59:59 UTC, 7 events" in page
    stopping = render_status_page(replace(healthy, stopping=True))
    assert '<div id="banner" class="bad">Shutting down</div>' in stopping
    pressed = render_status_page(
        replace(healthy, journal=replace(healthy.journal, backpressure="full"))
    )
    assert '<div id="banner" class="bad">Degraded</div>' in pressed
    assert '<dd id="j-backpressure">full</dd>' in pressed


def test_sinks_no_longer_configured_are_listed_and_hidden_when_none() -> None:
    assert '<section id="orphans" hidden>' in render_status_page(sample())
    orphan = OrphanStatus(
        name="webhook:<old>", dead=40, pending=2, retired=40, retired_at=1_799_999_999.0
    )
    page = render_status_page(sample(orphans=(orphan,)))
    assert '<section id="orphans">' in page
    cells = _cells(page, "orphan", html.escape("webhook:<old>"))
    assert cells == {
        "name": "webhook:<old>",
        "dead": "40",
        "pending": "2",
        "retired": "40",
        "retired_at": "2027-01-15 07:59:59 UTC",
    }


def _cells(dom: str, attr: str, name: str) -> dict[str, str]:
    row = re.search(rf'<tr data-{attr}="{re.escape(name)}">(.*?)</tr>', dom, re.S)
    assert row is not None, f"no row for {attr} {name}"
    return {
        k: html.unescape(re.sub(r"<[^>]+>", "", v))
        for k, v in re.findall(r'<td data-k="([a-z_]+)"[^>]*>(.*?)</td>', row.group(1), re.S)
    }


async def test_page_in_headless_chromium_matches_status_json(
    tmp_path: Path, emulator: Emulator, control: Control, http: aiohttp.ClientSession
) -> None:
    s = settings(tmp_path, tenants=[tenant(emulator)], console={"enabled": True})
    async with running_relay(s) as running:
        url = running.server.url if running.server else ""
        aliases = await control.aliases()
        for alias in aliases[:3]:
            await control.mail(alias)

        async def three_new() -> bool:
            _, data = await get_json(http, url + "status.json")
            counts = data["tenants"][0]["events_by_type"]
            return bool(counts.get("exmail.mail.new") == 3 and data["sinks"][0]["backlog"] == 0)

        await eventually(three_new, what="three mails delivered")
        # Rendered before more mail arrives; the refresh script must pick up the fourth.
        first_paint = await (await http.get(url)).text()
        await control.mail(aliases[3])

        async def four_new() -> bool:
            _, data = await get_json(http, url + "status.json")
            counts = data["tenants"][0]["events_by_type"]
            return bool(counts.get("exmail.mail.new") == 4 and data["sinks"][0]["backlog"] == 0)

        await eventually(four_new, what="fourth mail delivered")
        dom = await chromium("--virtual-time-budget=8000", "--dump-dom", url)
        _, data = await get_json(http, url + "status.json")
        # docs/images/status.png comes from test_ops_status_glance (with charts).
        shot = tmp_path / "status.png"
        await chromium(
            "--virtual-time-budget=4000", "--window-size=1100,900", f"--screenshot={shot}", url
        )
        assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 1000
    assert "mail.new 3" in first_paint
    tenant_cells = _cells(dom, "tenant", "acme")
    assert tenant_cells["state"] == "connected"
    assert tenant_cells["ver"] == str(data["tenants"][0]["ver"])
    assert "mail.new 4" in tenant_cells["events_by_type"]
    sink_cells = _cells(dom, "sink", "console")
    assert sink_cells["backlog"] == str(data["sinks"][0]["backlog"]) == "0"
    assert sink_cells["delivered"] == str(data["sinks"][0]["delivered"])
    assert sink_cells["state"] == "connected"
    # The script ran (it sets data-refreshed from status.json) and did not reload the page.
    assert re.search(r'<body data-refreshed="\d', dom)
    assert "All parts healthy" in dom


def test_script_field_reads_are_bound_to_the_records() -> None:
    script, reads = _bind_fields("s.$tenants.map(function (t) { return t.$name + d.x; })")
    assert script == "s.tenants.map(function (t) { return t.name + d.x; })"
    assert reads == {("Status", "tenants"), ("TenantStatus", "name")}


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("t.$nope", "reads TenantStatus.nope: no such field"),
        ("k.$subject", "reads SinkStatus.subject: no such field"),
        ("t.state", "write t.state as t.$state"),
        ("x.$state", "x.$state: x holds no record"),
        ("t.$state + $", "a $ that is not a field read"),
    ],
)
def test_script_reads_of_unknown_keys_cannot_load(template: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        _bind_fields(template)
