"""An operator confirms a held directory listing through the admin API
(``POST /admin/v1/tenants/{tenant}/directory/confirm-held``) and polls now
(``.../directory/poll``), over real HTTP against an in-process relay: the held listing is
committed once, with the events and ids the poll confirming it would have committed; a
second call finds nothing held; a confirmation asked while a poll is under way waits
for it (no second commit); every call is audited; the CLI and the status page say the
same. The real emulator (its control API deletes members), the real RabbitMQ."""

from __future__ import annotations

import asyncio
import html
import json
import logging
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from relay.app.settings import Settings
from relay.app.wiring import Running
from relay.cli.main import main as cli_main
from relay.core.events import USER_ADDED, USER_DELETED, user_change_id
from relay.emulator import Emulator
from relay.ops.admin import fingerprint
from relay.ops.metrics import Metrics
from relay.ops.page import held_label
from tests.pipeline.support import Broker, Consumer, control
from tests.pipeline.test_pipeline_directory2_guard import (
    DOMAIN,
    GONE,
    TENANT,
    bodies,
    company,
    lose_most_members,
    polls,
    relay,
    settle,
    state_of,
    tenant,
    user,
)
from tests.support import chromium, eventually

__all__ = ["company"]

pytestmark = pytest.mark.rabbitmq

TOKEN = "admin-token-for-held-listings-01"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NEW = f"new@{DOMAIN}"


def settings(emu: Emulator, broker: Broker, path: Path, **more: Any) -> Settings:
    """One api2 tenant with directory polls, one without (callbacks only), the admin API."""
    return Settings(
        journal={"path": path},
        tenants=[
            tenant(emu, **more),
            {"name": "callbackco", "api": "api2", "corpid": "wwcallbackonly01",
             "callback_token": "tok12345", "encoding_aes_key": "k" * 43},
        ],
        amqp=broker.amqp_settings(),
        sharding={"mode": "static"},
        http={"host": "127.0.0.1", "port": 0, "admin_token": TOKEN},
    )  # fmt: skip


def url(run: Running, path: str) -> str:
    assert run.server is not None
    return run.server.url.rstrip("/") + path


async def admin(
    http: aiohttp.ClientSession, run: Running, action: str, body: Any = None, name: str = TENANT
) -> tuple[int, dict[str, Any]]:
    where = url(run, f"/admin/v1/tenants/{name}/directory/{action}")
    async with http.post(where, json=body, headers=AUTH) as resp:
        return resp.status, await resp.json(content_type=None)


async def tenant_row(run: Running) -> dict[str, Any]:
    status = (await run.service.status()).to_json()
    [row] = [t for t in status["tenants"] if t["name"] == TENANT]
    return row


async def deletions_by_polls(emu: Emulator, broker: Broker, tmp_path: Path) -> list[str]:
    """The event ids of the mass deletion as polls confirm it (confirm_polls 2), then the
    company put back as it was."""
    metrics = Metrics(CollectorRegistry())
    s = settings(emu, broker, tmp_path / "by-polls.sqlite3", directory_confirm_polls=2)
    async with Consumer(broker) as consumer, relay(s, metrics):
        await consumer.wait_for(1)
        await lose_most_members(emu, changes=[("add", NEW, {})])
        await consumer.wait_for(1 + 17)
        await settle(metrics, 1)
        ids = [e["id"] for e in bodies(consumer)[1:]]
    await control(emu, "faults", {"kind": "http_500", "count": 1000,
                                  "path": "/cgi-bin/user/list"})  # fmt: skip
    for address in GONE:
        await user(emu, "add", address)
    await user(emu, "del", NEW)
    await control(emu, "faults", method="DELETE")
    return ids


async def test_confirm_held_commits_once_what_the_confirming_poll_would(
    company: Emulator,
    broker: Broker,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO, logger="relay")
    expected = await deletions_by_polls(company, broker, tmp_path)
    assert len(expected) == 17

    metrics = Metrics(CollectorRegistry())
    s = settings(company, broker, tmp_path / "j.sqlite3", directory_confirm_polls=0)
    async with (
        Consumer(broker) as consumer,
        relay(s, metrics) as running,
        aiohttp.ClientSession() as http,
    ):
        state = state_of(running)
        await consumer.wait_for(1)
        # Nothing held yet: 409 as a problem, and nothing committed.
        status, problem = await admin(http, running, "confirm-held")
        assert status == 409 and problem["type"].endswith(":nothing-held"), problem
        await lose_most_members(company, changes=[("add", NEW, {})])
        await eventually(lambda: polls(metrics).get("held", 0) >= 2, what="held polls")
        held = state.held
        assert held is not None and held.deleted == 15 and held.confirm_polls == 0

        # The status page says so, with the counts, and its refresh script the same
        # (headless Chromium runs it); the number of polls grows meanwhile.
        label = re.escape(held_label(held)).replace(re.escape(f"poll {held.polls},"), r"poll \d+,")
        assert "would delete 15 of 20 members (poll " in held_label(held)
        assert ", never confirmed by polls, since 20" in held_label(held)
        async with http.get(url(running, "/")) as resp:
            page = await resp.text()
        dom = await chromium("--virtual-time-budget=6000", "--dump-dom", url(running, "/"))
        assert re.search(r'<body data-refreshed="\d', dom), "the script ran"
        for text in (page, dom):
            row = re.search(rf'<tr data-tenant="{TENANT}">.*?class="state held">(.*?)</td>',
                            text, re.S)  # fmt: skip
            assert row is not None, "the held listing is not on the page"
            assert re.fullmatch(f"by callback, none yet; {label}", html.unescape(row.group(1)))

        # Another hold than the one held (since): refused, nothing committed.
        status, problem = await admin(http, running, "confirm-held", {"since": held.since - 1})
        assert status == 409 and problem["type"].endswith(":hold-changed"), problem
        assert "would delete 15 of 20 members" in problem["detail"]
        for bad in ({"since": "yesterday"}, {"other": 1}, {"since": 10**400}, {"since": True}):
            status, problem = await admin(http, running, "confirm-held", bad)
            assert status == 400, (bad, problem)
        assert len(consumer.messages) == 1 and state.held is not None

        # The CLI confirms it (the since it saw); committed once, with the ids polls give.
        monkeypatch.setenv("RELAY_ADMIN_TOKEN", TOKEN)
        base = url(running, "")
        since = repr(state.held.since)
        argv = ["directory", "confirm-held", TENANT, "--since", since, "--relay", base]
        assert await asyncio.to_thread(cli_main, argv) == 0
        out = capsys.readouterr().out
        assert f"tenant {TENANT}: held listing confirmed on replica 0: 15 deleted, 1 added" in out
        assert "17 event(s) committed" in out
        await consumer.wait_for(1 + 17)
        got = bodies(consumer)[1:]
        assert [e["id"] for e in got] == expected, "not the events polls would commit"
        for event in got[1:]:
            data = event["data"]
            assert event["id"] == user_change_id(event["type"], TENANT, data["alias"],
                                                 data["profile"])  # fmt: skip
        assert sorted(e["data"]["alias"] for e in got if e["type"] == USER_DELETED) == GONE
        assert [e["data"]["alias"] for e in got if e["type"] == USER_ADDED] == [NEW]
        assert state.held is None and state.members == 6

        # A second call: nothing held (also through the CLI: exit 1, one line).
        status, problem = await admin(http, running, "confirm-held")
        assert status == 409 and problem["type"].endswith(":nothing-held")
        assert await asyncio.to_thread(cli_main, [*argv[:3], "--relay", base]) == 1
        assert "the relay answered 409: Nothing held" in capsys.readouterr().err
        # Poll now: the listing is the stored one; nothing more is emitted.
        status, answer = await admin(http, running, "poll")
        assert status == 200 and answer["outcome"] == "unchanged", answer
        assert answer["directory"]["held"] is None and answer["directory"]["members"] == 6
        assert (
            await asyncio.to_thread(cli_main, ["directory", "poll", TENANT, "--relay", base]) == 0
        )
        assert f"tenant {TENANT}: polled on replica 0: unchanged" in capsys.readouterr().out
        await settle(metrics, 1)
        assert len(consumer.messages) == 1 + 17, "committed once"
        row_json = await tenant_row(running)
        assert row_json["events_by_type"][USER_DELETED] == 15
        assert row_json["directory"]["held"] is None

        # Tenants that cannot hold a listing.
        status, problem = await admin(http, running, "confirm-held", name="nobody")
        assert status == 404 and problem["type"].endswith(":unknown-tenant")
        status, problem = await admin(http, running, "poll", name="callbackco")
        assert status == 409 and problem["type"].endswith(":directory-not-polled")
        async with http.post(url(running, f"/admin/v1/tenants/{TENANT}/directory/poll")) as resp:
            assert resp.status == 401, "the admin token is needed"

    # Audited: who, what, and how it ended, for the commit and the refusals alike.
    audit = [r for r in caplog.records if r.name == "relay.audit"]
    confirms = [r for r in audit if r.route.endswith("/confirm-held")]  # type: ignore[attr-defined]
    [done] = [r for r in confirms if "events" in r.result]  # type: ignore[attr-defined]
    assert done.result["events"] == 17 and done.result["deleted"] == 15  # type: ignore[attr-defined]
    assert done.actor == fingerprint(TOKEN)  # type: ignore[attr-defined]
    assert done.what == {"tenant": TENANT, "since": float(since)}  # type: ignore[attr-defined]
    problems = [r.result.get("problem") for r in confirms]  # type: ignore[attr-defined]
    assert problems.count("nothing-held") == 3 and "hold-changed" in problems
    assert all(TOKEN not in repr(vars(r)) for r in audit)
    assert any(
        r.getMessage() == "held directory deletions confirmed by an operator and committed"
        for r in caplog.records
    )


async def test_a_confirmation_asked_during_a_poll_waits_for_it_and_commits_nothing_twice(
    company: Emulator, broker: Broker, tmp_path: Path
) -> None:
    """confirm_polls 2, polls only when asked: the second held poll is under way (slow
    user/list) when an operator confirms. The confirmation waits for that poll, which
    confirms the hold itself and commits it; the operator is told nothing is held."""
    metrics = Metrics(CollectorRegistry())
    s = settings(company, broker, tmp_path / "j.sqlite3", directory_interval=600,
                 directory_confirm_polls=2)  # fmt: skip
    async with (
        Consumer(broker) as consumer,
        relay(s, metrics) as running,
        aiohttp.ClientSession() as http,
    ):
        state = state_of(running)
        await consumer.wait_for(1)
        await lose_most_members(company)
        status, answer = await admin(http, running, "poll")
        assert status == 200 and answer["outcome"] == "held", answer
        assert answer["directory"]["held"]["polls"] == 1
        await control(company, "faults", {"kind": "delay", "seconds": 2, "count": 1,
                                           "path": "/cgi-bin/user/list"})  # fmt: skip
        started = state.last_poll_at
        second = asyncio.create_task(admin(http, running, "poll"))
        await eventually(lambda: state.last_poll_at != started, what="the second poll started")
        assert not second.done()
        status, problem = await admin(http, running, "confirm-held")
        waited = second.done()
        polled, answer = await second
        _, after = await admin(http, running, "poll")
        assert after["outcome"] == "unchanged"
        assert (await tenant_row(running))["events_by_type"][USER_DELETED] == 15, (
            "the deletions were committed twice"
        )
        assert waited, "the confirmation did not wait for the poll under way"
        assert polled == 200 and answer["outcome"] == "changed", answer
        assert status == 409 and problem["type"].endswith(":nothing-held"), problem
        await consumer.wait_for(1 + 16)
        assert len(consumer.messages) == 1 + 16
        assert polls(metrics) == {"baseline": 1, "held": 1, "changed": 1, "unchanged": 1}


def test_the_held_label_counts_polls_and_says_when_polls_never_confirm() -> None:
    from relay.runtime.pollstate import HeldStatus

    held = HeldStatus(deleted=15, added=1, updated=0, members=20, listed=6, polls=2,
                      confirm_polls=3, since=1_800_000_000.0)  # fmt: skip
    assert held_label(held) == (
        "directory listing held: would delete 15 of 20 members (poll 2 of 3, since"
        " 2027-01-15 08:00:00 UTC)"
    )
    never = HeldStatus(**{**json.loads(json.dumps(held.to_json())), "confirm_polls": 0})
    assert "(poll 2, never confirmed by polls, since" in held_label(never)
