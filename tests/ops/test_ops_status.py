"""The typed status: ``to_json()`` of hand-built values (pure), the key set of
``/status.json`` pinned against literal lists, and every key the page's script reads
present in the JSON of a running relay."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from relay.emulator import Emulator
from relay.ops import page
from relay.runtime.status import (
    CheckpointStatus,
    ClientStatus,
    DirectoryPendingStatus,
    HandoffStatus,
    Health,
    JournalStatus,
    Liveness,
    OrphanStatus,
    PruneStatus,
    RecentEvent,
    ShardingStatus,
    SinkStatus,
    Status,
    TenantsPage,
    TenantStatus,
)
from tests.ops.conftest import Control, eventually, get_json, settings, tenant
from tests.support import running_relay

# The /status.json contract (docs/operations.md). Change these only on purpose.
STATUS_KEYS = [
    "now",
    "started_at",
    "stopping",
    "show_content",
    "tenants",
    "sinks",
    "journal",
    "recent_events",
    "orphans",
    "clients",
    "sharding",
]
SHARDING_KEYS = [
    "mode",
    "replica",
    "shards",
    "owned",
    "live",
    "standby",
    "last_handoff",
    "last_error",
    "conflicts",
    "refused",
    "unhealthy",
    "blocked",
    "checkpoints",
]
HANDOFF_KEYS = ["shard", "kind", "reason", "at"]
CHECKPOINT_KEYS = [
    "queues",
    "connected",
    "last_error",
    "published",
    "refused",
    "malformed",
    "last_refused",
    "waiting",
]
TENANT_KEYS = [
    "name",
    "state",
    "ver",
    "last_event_at",
    "last_error",
    "last_error_at",
    "failures",
    "events_by_type",
    "directory_pending",
    "api",
    "callbacks",
]
DIRECTORY_PENDING_KEYS = ["target", "since", "attempts", "last_error"]
SINK_KEYS = [
    "name",
    "connected",
    "disabled",
    "in_flight",
    "backlog",
    "oldest_pending_age",
    "delivered",
    "failed",
    "dead",
    "last_error",
    "blocked",
]
WEBHOOK_SINK_KEYS = [*SINK_KEYS, "target", "types", "tenants"]
JOURNAL_KEYS = [
    "path",
    "events",
    "backlog_events",
    "backlog_bytes",
    "max_events",
    "max_bytes",
    "file_bytes",
    "backpressure",
    "retention_seconds",
    "last_prune",
]
PRUNE_KEYS = ["at", "events"]
TENANTS_PAGE_KEYS = ["q", "page", "per_page", "pages", "matched", "total", "states"]
ORPHAN_KEYS = ["name", "dead", "pending", "retired", "retired_at"]
CLIENT_KEYS = ["name", "tenants", "scopes", "last_used_at", "requests"]
EVENT_KEYS = ["time", "tenant", "type", "id"]
EVENT_KEYS_WITH_CONTENT = [*EVENT_KEYS, "subject"]


def hand_built(*, subject: str | None = None) -> Status:
    return Status(
        now=1_800_000_000.5,
        started_at=1_799_999_000.0,
        stopping=False,
        show_content=subject is not None,
        tenants=(
            TenantStatus(
                name="acme",
                state="connected",
                ver=7,
                last_event_at=1_799_999_999.0,
                last_error=None,
                last_error_at=None,
                failures=0,
                events_by_type={"exmail.mail.new": 2},
            ),
        ),
        sinks=(
            SinkStatus(
                name="console",
                connected=True,
                disabled=None,
                in_flight=1,
                backlog=3,
                oldest_pending_age=0.25,
                delivered=9,
                failed=0,
                dead=0,
                last_error=None,
            ),
            SinkStatus(
                name="webhook:crm",
                connected=True,
                disabled="410 Gone",
                in_flight=0,
                backlog=0,
                oldest_pending_age=None,
                delivered=1,
                failed=2,
                dead=1,
                last_error="HTTP 410",
                target="https://crm.example.com/hook",
                types=("exmail.mail.*",),
                tenants=(),
            ),
        ),
        journal=JournalStatus(
            path="/var/lib/relay/journal.sqlite3",
            events=12,
            backlog_events=3,
            backlog_bytes=1200,
            max_events=1000,
            max_bytes=1 << 20,
            file_bytes=65536,
            backpressure=None,
            retention_seconds=86400.0,
            last_prune=PruneStatus(at=1_799_999_500.0, events=4),
        ),
        recent_events=(
            RecentEvent(
                time=1_799_999_999.0,
                tenant="acme",
                type="exmail.mail.new",
                id="e1",
                subject=subject,
            ),
        ),
        orphans=(
            OrphanStatus(
                name="webhook:old", dead=40, pending=0, retired=40, retired_at=1_799_999_000.5
            ),
        ),
        clients=(
            ClientStatus(
                name="portal", tenants=(), scopes=("read", "sso"), last_used_at=None, requests=0
            ),
        ),
        sharding=ShardingStatus(
            mode="lease",
            replica="relay-0",
            shards=16,
            owned=(3, 7),
            live=("relay-0", "relay-1"),
            standby=False,
            last_handoff=HandoffStatus(shard=7, kind="acquired", reason=None, at=1_799_999_998.0),
            refused={"unsigned": 2},
            blocked={"leases": {"reason": "low on disk", "since": 1_799_999_990.0}},
        ),
    )


def test_to_json_is_the_documented_document() -> None:
    assert hand_built().to_json() == {
        "now": 1_800_000_000.5,
        "started_at": 1_799_999_000.0,
        "stopping": False,
        "show_content": False,
        "tenants": [
            {
                "name": "acme",
                "state": "connected",
                "ver": 7,
                "last_event_at": 1_799_999_999.0,
                "last_error": None,
                "last_error_at": None,
                "failures": 0,
                "events_by_type": {"exmail.mail.new": 2},
                "directory_pending": None,
                "api": "openapi",
                "callbacks": None,
            }
        ],
        "sinks": [
            {
                "name": "console",
                "connected": True,
                "disabled": None,
                "in_flight": 1,
                "backlog": 3,
                "oldest_pending_age": 0.25,
                "delivered": 9,
                "failed": 0,
                "dead": 0,
                "last_error": None,
                "blocked": None,
            },
            {
                "name": "webhook:crm",
                "connected": True,
                "disabled": "410 Gone",
                "in_flight": 0,
                "backlog": 0,
                "oldest_pending_age": None,
                "delivered": 1,
                "failed": 2,
                "dead": 1,
                "last_error": "HTTP 410",
                "blocked": None,
                "target": "https://crm.example.com/hook",
                "types": ["exmail.mail.*"],
                "tenants": [],
            },
        ],
        "journal": {
            "path": "/var/lib/relay/journal.sqlite3",
            "events": 12,
            "backlog_events": 3,
            "backlog_bytes": 1200,
            "max_events": 1000,
            "max_bytes": 1 << 20,
            "file_bytes": 65536,
            "backpressure": None,
            "retention_seconds": 86400.0,
            "last_prune": {"at": 1_799_999_500.0, "events": 4},
        },
        "recent_events": [
            {"time": 1_799_999_999.0, "tenant": "acme", "type": "exmail.mail.new", "id": "e1"}
        ],
        "orphans": [
            {
                "name": "webhook:old",
                "dead": 40,
                "pending": 0,
                "retired": 40,
                "retired_at": 1_799_999_000.5,
            }
        ],
        "clients": [
            {
                "name": "portal",
                "tenants": [],
                "scopes": ["read", "sso"],
                "last_used_at": None,
                "requests": 0,
            }
        ],
        "sharding": {
            "mode": "lease",
            "replica": "relay-0",
            "shards": 16,
            "owned": [3, 7],
            "live": ["relay-0", "relay-1"],
            "standby": False,
            "last_handoff": {"shard": 7, "kind": "acquired", "reason": None, "at": 1_799_999_998.0},
            "last_error": None,
            "conflicts": [],
            "refused": {"unsigned": 2},
            "unhealthy": None,
            "blocked": {"leases": {"reason": "low on disk", "since": 1_799_999_990.0}},
        },
    }


def test_key_order_and_optional_keys() -> None:
    doc = hand_built(subject="lina@example.com").to_json()
    assert list(doc) == STATUS_KEYS
    assert list(doc["tenants"][0]) == TENANT_KEYS
    assert [list(s) for s in doc["sinks"]] == [SINK_KEYS, WEBHOOK_SINK_KEYS]
    assert list(doc["journal"]) == JOURNAL_KEYS
    assert list(doc["journal"]["last_prune"]) == PRUNE_KEYS
    assert list(doc["recent_events"][0]) == EVENT_KEYS_WITH_CONTENT
    assert doc["recent_events"][0]["subject"] == "lina@example.com"
    assert list(doc["orphans"][0]) == ORPHAN_KEYS
    assert list(doc["clients"][0]) == CLIENT_KEYS
    never_pruned = replace(hand_built().journal, last_prune=None)
    assert never_pruned.to_json()["last_prune"] is None


def test_the_records_declare_exactly_the_pinned_keys() -> None:
    # tenants_page only when paged, config_warnings only when a token file is not taken
    assert Status.json_keys() == {*STATUS_KEYS, "tenants_page", "config_warnings"}
    assert TenantsPage.json_keys() == set(TENANTS_PAGE_KEYS)
    # ``directory``: an api2 tenant's directory polls, only when it has them (OMIT_NONE).
    assert TenantStatus.json_keys() == {*TENANT_KEYS, "directory"}
    assert DirectoryPendingStatus.json_keys() == set(DIRECTORY_PENDING_KEYS)
    assert SinkStatus.json_keys() == set(WEBHOOK_SINK_KEYS)
    assert JournalStatus.json_keys() == set(JOURNAL_KEYS)
    assert PruneStatus.json_keys() == set(PRUNE_KEYS)
    assert RecentEvent.json_keys() == set(EVENT_KEYS_WITH_CONTENT)
    assert OrphanStatus.json_keys() == set(ORPHAN_KEYS)
    assert ClientStatus.json_keys() == set(CLIENT_KEYS)
    assert ShardingStatus.json_keys() == set(SHARDING_KEYS)
    assert HandoffStatus.json_keys() == set(HANDOFF_KEYS)
    assert CheckpointStatus.json_keys() == set(CHECKPOINT_KEYS)


def test_health_and_liveness_json() -> None:
    health = Health(ok=("journal", "sink:console"), failing={"tenant:b": "failed: 1101"})
    assert health.to_json() == {
        "ok": ["journal", "sink:console"],
        "failing": {"tenant:b": "failed: 1101"},
    }
    assert not health.healthy
    assert Health(ok=("journal",), failing={}).healthy
    assert Liveness(alive=False, dead_tasks=("housekeeping",)).to_json() == {
        "alive": False,
        "dead_tasks": ["housekeeping"],
    }
    assert Liveness(alive=True).to_json() == {"alive": True, "dead_tasks": []}


def test_records_are_frozen() -> None:
    status = hand_built()
    with pytest.raises(AttributeError):
        status.now = 0.0  # type: ignore[misc]
    assert not hasattr(status, "__dict__")


# Which JSON object each one-letter variable of the page's script stands for.
SCRIPT_VARS = {
    "s": "status",
    "t": "tenant",
    "k": "sink",
    "e": "event",
    "j": "journal",
    "p": "prune",
    "o": "orphan",
    "c": "client",
    "g": "tenants_page",
    "cb": "callbacks",
    "y": "directory",
    "h": "held",
}
# A member access ``x.name`` or ``x["name"]`` on one of those variables.
SCRIPT_READ = re.compile(r"""(?<![\w.$])(cb|[stkejpocgyh])(?:\.(\w+)|\[["'](\w+)["']\])""")


def script_reads(html_page: str) -> set[tuple[str, str]]:
    scripts = re.findall(r"<script>(.*?)</script>", html_page, re.S)
    assert len(scripts) == 1
    return {(SCRIPT_VARS[v], a or b) for v, a, b in SCRIPT_READ.findall(scripts[0])}


def test_script_reads_parse_the_rendered_page() -> None:
    reads = script_reads(page.render_status_page(hand_built()))
    # Spot checks that the parser sees each kind of object the script reads.
    for read in [
        ("status", "tenants"),
        ("tenant", "events_by_type"),
        ("sink", "oldest_pending_age"),
        ("event", "subject"),
        ("journal", "retention_seconds"),
        ("prune", "at"),
        ("orphan", "retired_at"),
        ("client", "last_used_at"),
    ]:
        assert read in reads, read
    # The module's own account of what its script reads agrees with the parser.
    names = {
        "Status": "status",
        "TenantStatus": "tenant",
        "SinkStatus": "sink",
        "RecentEvent": "event",
        "JournalStatus": "journal",
        "PruneStatus": "prune",
        "OrphanStatus": "orphan",
        "ClientStatus": "client",
        "TenantsPage": "tenants_page",
        "CallbackStatus": "callbacks",
        "DirectoryPollStatus": "directory",
        "HeldStatus": "held",
    }
    assert {(names[cls], key) for cls, key in page.SCRIPT_READS} == reads


async def test_status_json_keys_are_pinned_and_cover_the_page_script(
    tmp_path: Path, emulator: Emulator, control: Control, http: aiohttp.ClientSession
) -> None:
    async def accept(_: web.Request) -> web.Response:
        return web.Response(status=204)

    receiver = web.Application()
    receiver.router.add_post("/hook", accept)
    runner = web.AppRunner(receiver, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    hook = {
        "name": "crm",
        "url": f"http://127.0.0.1:{port}/hook",
        "secret": "whsec_" + base64.b64encode(bytes(range(32))).decode(),
        "types": ["exmail.mail.*"],
    }
    s = settings(
        tmp_path,
        tenants=[tenant(emulator)],
        console={"enabled": True},
        webhooks=[hook],
        status={"show_content": True},
        journal={
            "path": str(tmp_path / "journal.sqlite3"),
            "synchronous": "normal",
            "prune_interval": 0.1,
        },
    )
    try:
        async with running_relay(s) as running:
            url = running.server.url if running.server else ""
            await control.mail((await control.aliases())[0])

            async def complete() -> bool:
                _, data = await get_json(http, url + "status.json")
                return bool(
                    data["recent_events"]
                    and data["journal"]["last_prune"] is not None
                    and all(k["delivered"] >= 1 for k in data["sinks"])
                )

            await eventually(complete, what="an event delivered to both sinks and a prune")
            _, data = await get_json(http, url + "status.json")
            async with http.get(url) as resp:
                html_page = await resp.text()
            # What the page's script fetches: status.json for the page of tenants it shows.
            query = re.search(r'data-tenants-query="([^"]*)"', html_page)
            assert query is not None
            _, paged = await get_json(http, url + "status.json?" + html.unescape(query[1]))
    finally:
        await runner.cleanup()

    assert list(data) == STATUS_KEYS
    assert [list(t) for t in data["tenants"]] == [TENANT_KEYS]
    sinks = {k["name"]: list(k) for k in data["sinks"]}
    assert sinks == {"console": SINK_KEYS, "webhook:crm": WEBHOOK_SINK_KEYS}
    assert list(data["journal"]) == JOURNAL_KEYS
    assert list(data["journal"]["last_prune"]) == PRUNE_KEYS
    assert {tuple(e) for e in data["recent_events"]} == {tuple(EVENT_KEYS_WITH_CONTENT)}
    assert data["orphans"] == [], "every sink with rows in the journal is configured"
    # ``checkpoints`` only in lease mode (omitted while None).
    assert list(data["sharding"]) == [k for k in SHARDING_KEYS if k != "checkpoints"]
    assert data["sharding"]["mode"] == "static", "no [amqp]: static is the default"

    assert list(paged) == [*STATUS_KEYS, "tenants_page"]
    assert list(paged["tenants_page"]) == TENANTS_PAGE_KEYS
    objects: dict[str, list[dict[str, Any]]] = {
        "status": [paged],
        "tenants_page": [paged["tenants_page"]],
        "tenant": data["tenants"],
        "sink": data["sinks"],
        "event": data["recent_events"],
        "journal": [data["journal"]],
        "prune": [data["journal"]["last_prune"]],
        "orphan": data["orphans"],
        "client": data["clients"],
        "callbacks": [],  # no api2 tenant here: test_ops_callback_status.py
        "directory": [],  # nor directory polls: test_pipeline_directory2_confirm.py
        "held": [],
    }
    reads = script_reads(html_page)
    assert len(reads) > 30, reads
    # Omitted while None (OMIT_NONE), so read with a guard: an api2 tenant's directory.
    optional = {("tenant", "directory")}
    missing = {
        (kind, key) for kind, key in reads - optional if any(key not in o for o in objects[kind])
    }
    assert not missing, f"the page's script reads keys status.json lacks: {missing}"
