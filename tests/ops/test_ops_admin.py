"""The admin API (``/admin/v1/``) on a running relay: its own token, dead letters listed
with filters and pages, replayed and dropped, endpoints switched, the journal checked,
the shards described, every mutation audited, and the token nowhere in logs, status or
metrics. Real parts: a relay built from settings, its journal file, a loopback webhook
receiver that fails deliveries (so they really become dead letters), the emulator."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from relay.app.wiring import Running
from relay.emulator import Emulator
from relay.ops.admin import fingerprint
from tests.ops.conftest import settings, tenant
from tests.pipeline.test_pipeline_journal import mail, to
from tests.support import eventually, running_relay
from tests.webhook.conftest import Answer, Receiver, hook, receiver

__all__ = ["receiver"]

TOKEN = "admin-token-0123456789abcdef"
OPS_TOKEN = "ops-status-token-000000000001"
CLIENT_KEY = "client-key-00000000000000001"
BAD = "webhook:bad"


def admin_settings(emu: Emulator, tmp_path: Path, rec: Receiver, **more: Any) -> Any:
    sections: dict[str, Any] = {
        "tenants": [tenant(emu)],
        "http": {"port": 0, "admin_token": TOKEN, "auth_token": OPS_TOKEN},
        "webhooks": [
            hook(rec, "bad", retry_schedule=[0.05], types=["nothing.routed.here"]),
            hook(rec, "good", types=["nothing.routed.here"]),
        ],
        "clients": [{"name": "oa", "key": CLIENT_KEY, "scopes": ["read"]}],
    }
    sections.update(more)
    return settings(tmp_path, **sections)


def url(run: Running, path: str) -> str:
    assert run.server is not None
    return run.server.url.rstrip("/") + "/admin/v1/" + path


AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def call(
    http: aiohttp.ClientSession, run: Running, method: str, path: str, **kw: Any
) -> tuple[int, Any]:
    kw.setdefault("headers", AUTH)
    async with http.request(method, url(run, path), **kw) as resp:
        return resp.status, await resp.json(content_type=None)


async def dead_count(http: aiohttp.ClientSession, run: Running) -> int:
    status, body = await call(http, run, "GET", "deadletters?limit=1000")
    assert status == 200, body
    return len(body["items"])


@pytest.fixture
async def relay(emulator: Emulator, tmp_path: Path, receiver: Receiver) -> AsyncIterator[Running]:
    receiver.script("bad", default=Answer(500))
    async with running_relay(admin_settings(emulator, tmp_path, receiver)) as run:
        journal = run.service.journal
        await journal.append("acme", [mail(n) for n in range(3)], route=to(BAD))
        await journal.append("beta", [mail(n, "beta") for n in range(3, 5)], route=to(BAD))
        async with aiohttp.ClientSession() as http:

            async def all_dead() -> bool:
                return await dead_count(http, run) == 5

            await eventually(all_dead, seconds=30, what="5 dead letters (2 attempts each)")
        yield run


async def test_the_token_gates_the_admin_api_and_never_leaks(
    relay: Running, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="relay")
    # No token: 401 with a challenge, as a problem.
    async with http.get(url(relay, "deadletters")) as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert resp.content_type == "application/problem+json"
        assert (await resp.json(content_type=None))["type"].endswith(":unauthorized")
    # The status page's token and a gateway client key are not the admin token: 403.
    for other in (OPS_TOKEN, CLIENT_KEY, TOKEN + "x", TOKEN[:-1]):
        status, body = await call(
            http, relay, "GET", "deadletters", headers={"Authorization": f"Bearer {other}"}
        )
        assert status == 403, body
        status, body = await call(
            http,
            relay,
            "POST",
            "deadletters/drop",
            json={"tenant": "acme"},
            headers={"Authorization": f"Bearer {other}"},
        )
        assert status == 403
    assert await dead_count(http, relay) == 5, "a refused drop dropped nothing"
    refused = [r for r in caplog.records if r.name == "relay.audit"]
    assert len(refused) == 4, "each refused mutation is audited"
    assert {r.result["problem"] for r in refused} == {"forbidden"}  # type: ignore[attr-defined]
    assert fingerprint(OPS_TOKEN) in {getattr(r, "actor", None) for r in refused}
    async with http.post(url(relay, "deadletters/drop"), json={"tenant": "acme"}) as resp:
        assert resp.status == 401
    assert caplog.records[-1].actor == "anonymous"  # type: ignore[attr-defined]
    # A refused call's forwarding headers are its own word: the audit line never names
    # the admin (or a hop) it claims to come from.
    forged = {"Via": "1.1 exmail-relay-relay-1", "X-Relay-Admin-Actor": fingerprint(TOKEN)}
    async with http.post(
        url(relay, "deadletters/drop"), json={"tenant": "acme"}, headers=forged
    ) as resp:
        assert resp.status == 401
    assert caplog.records[-1].actor == "anonymous"  # type: ignore[attr-defined]
    assert caplog.records[-1].via is None  # type: ignore[attr-defined]
    # The admin token does not open the status page (its own auth_token does).
    async with http.get(url(relay, "").replace("/admin/v1/", "/status.json"), headers=AUTH) as r:
        assert r.status == 401
    # The document is public.
    async with http.get(url(relay, "openapi.json")) as resp:
        assert resp.status == 200
    # A mutation, then: the token is in no log line, no status, no metric.
    status, _ = await call(http, relay, "POST", "endpoints/good/disable")
    assert status == 200
    ops = {"Authorization": f"Bearer {OPS_TOKEN}"}
    base = url(relay, "").replace("/admin/v1/", "")
    seen = []
    for path in ("status.json", "metrics", ""):
        async with http.get(f"{base}/{path}", headers=ops) as resp:
            assert resp.status == 200
            seen.append(await resp.text())
    seen.append(caplog.text)
    seen.extend(repr(vars(r)) for r in caplog.records)
    seen.append(repr(relay))
    assert all(TOKEN not in text for text in seen)


async def raw_status(run: Running, method: str, path: str, authorization: bytes) -> int:
    """The status of a request whose ``Authorization`` value is sent as raw bytes."""
    where = urlsplit(url(run, ""))
    assert where.hostname is not None and where.port is not None
    reader, writer = await asyncio.open_connection(where.hostname, where.port)
    try:
        writer.write(
            f"{method} {path} HTTP/1.1\r\nHost: {where.netloc}\r\nConnection: close\r\n"
            "Content-Length: 0\r\n".encode()
            + b"Authorization: "
            + authorization
            + b"\r\n\r\n"
        )
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout=20)
    finally:
        writer.close()
    return int(raw.split(b" ", 2)[1])


async def test_a_credential_that_is_not_utf8_is_refused_not_a_500(
    relay: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """aiohttp reads header bytes that are not UTF-8 as lone surrogates; hashing such a
    credential must not raise (it was a 500 on every guarded path)."""
    caplog.set_level(logging.INFO, logger="relay")
    for junk in (b"Bearer \xff\xfe" + TOKEN.encode(), b"Bearer " + TOKEN.encode() + b"\xc3"):
        assert await raw_status(relay, "GET", "/admin/v1/deadletters", junk) == 403
        assert await raw_status(relay, "POST", "/admin/v1/deadletters/drop", junk) in (400, 403)
        assert await raw_status(relay, "GET", "/status.json", junk) == 401
        assert await raw_status(relay, "GET", "/v1/tenants/acme/users/a@b.c", junk) == 401
    refused = [r for r in caplog.records if r.name == "relay.audit"]
    assert refused and all(getattr(r, "actor", "").startswith("admin:") for r in refused), (
        "the refused drop is audited by the offered credential's fingerprint"
    )
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_relay_without_an_admin_token_has_no_admin_api(
    emulator: Emulator, tmp_path: Path, receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    s = admin_settings(emulator, tmp_path, receiver, http={"port": 0})
    async with running_relay(s) as run:
        status, body = await call(http, run, "GET", "deadletters")
        assert status == 404
        assert body["type"] == "urn:exmail-relay:problem:admin-off"
        assert "admin_token" in body["detail"]


async def test_dead_letters_listed_filtered_paged_replayed_and_dropped_with_audit(
    relay: Running,
    receiver: Receiver,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="relay.audit")
    status, body = await call(http, relay, "GET", "deadletters")
    assert status == 200
    assert body["complete"] is True and body["unreachable"] == []
    me = body["replicas"][0]["replica"]
    assert {i["replica"] for i in body["items"]} == {me}
    assert {i["endpoint"] for i in body["items"]} == {"bad"}
    assert all(i["attempts"] == 2 for i in body["items"])
    # Filters: tenant, endpoint, type, time range; unknown values match nothing.
    _, beta = await call(http, relay, "GET", "deadletters?tenant=beta")
    assert sorted(i["event_id"] for i in beta["items"]) == sorted(
        i["event_id"] for i in body["items"] if i["tenant"] == "beta"
    )
    assert len(beta["items"]) == 2
    _, by_sink = await call(http, relay, "GET", "deadletters?endpoint=bad&type=exmail.mail.new")
    assert len(by_sink["items"]) == 5
    _, none = await call(http, relay, "GET", "deadletters?endpoint=good")
    assert none["items"] == []
    _, old = await call(http, relay, "GET", "deadletters?until=2000-01-01T00:00:00")
    assert old["items"] == []
    _, recent = await call(http, relay, "GET", "deadletters?since=2000-01-01")
    assert len(recent["items"]) == 5
    # Paging: two at a time, every letter once.
    seen: list[str] = []
    query = "deadletters?limit=2"
    pages = 0
    while True:
        _, page = await call(http, relay, "GET", query)
        seen += [i["event_id"] for i in page["items"]]
        pages += 1
        if page["next"] is None:
            break
        query = f"deadletters?limit=2&cursor={page['next']}"
    assert pages == 3 and sorted(seen) == sorted(i["event_id"] for i in body["items"])
    # Bad input: 400 problems naming the field.
    for bad in ("limit=0", "limit=x", "cursor=%%%", "since=yesterday", "sink=a&endpoint=b"):
        status, problem = await call(http, relay, "GET", f"deadletters?{bad}")
        assert status == 400, bad
        assert problem["type"] == "urn:exmail-relay:problem:invalid-request"
    # Replay one, now that the endpoint answers: it is delivered.
    receiver.defaults["bad"] = Answer(200)
    one = body["items"][0]["event_id"]
    status, replayed = await call(
        http, relay, "POST", "deadletters/replay", json={"event_id": one, "endpoint": "bad"}
    )
    assert status == 200, replayed
    assert replayed["replayed"] == 1 and replayed["complete"] is True
    delivered = await receiver.wait_for("bad", 1, status=200)
    assert delivered[0].headers["webhook-id"] == one
    assert await dead_count(http, relay) == 4
    # A sink the relay does not run: 409 unless forced.
    status, problem = await call(
        http, relay, "POST", "deadletters/replay", json={"sink": "webhook:gone"}
    )
    assert status == 409 and problem["type"].endswith(":sink-not-configured")
    # Drop needs a filter; drop beta's.
    status, _ = await call(http, relay, "POST", "deadletters/drop", json={})
    assert status == 400
    status, _ = await call(http, relay, "POST", "deadletters/drop", json={"colour": "red"})
    assert status == 400
    status, dropped = await call(http, relay, "POST", "deadletters/drop", json={"tenant": "beta"})
    assert status == 200 and dropped["dropped"] == 2
    assert await dead_count(http, relay) == 2
    # Every mutation was audited: who (a fingerprint, not the token), what, the result.
    lines = [r for r in caplog.records if r.name == "relay.audit"]
    actor = fingerprint(TOKEN)
    assert {getattr(r, "actor", None) for r in lines} == {actor}
    replays = [r for r in lines if "replay" in getattr(r, "route", "")]
    assert any(getattr(r, "result", {}).get("replayed") == 1 for r in replays)
    assert any(getattr(r, "result", {}).get("problem") == "sink-not-configured" for r in replays)
    drops = [r for r in lines if "drop" in getattr(r, "route", "")]
    assert any(getattr(r, "what", {}) == {"tenant": "beta"} for r in drops)
    assert all(TOKEN not in json.dumps(vars(r), default=str) for r in lines)


async def test_endpoints_switched_the_journal_checked_and_the_shards_described(
    relay: Running, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="relay.audit")
    journal = relay.service.journal
    status, body = await call(
        http, relay, "POST", "endpoints/good/disable", json={"reason": "maintenance"}
    )
    assert status == 200, body
    assert body["disabled"] is True and body["replicas"][0]["was_disabled"] is False
    assert await journal.disabled("webhook:good") == "maintenance"
    _, listed = await call(http, relay, "GET", "endpoints")
    states = {i["endpoint"]: i for i in listed["items"]}
    assert states["good"]["disabled"] is True and states["good"]["reason"] == "maintenance"
    assert states["bad"]["dead"] == 5 and states["bad"]["configured"] is True
    status, body = await call(http, relay, "POST", "endpoints/good/enable")
    assert status == 200 and body["replicas"][0]["was_reason"] == "maintenance"
    assert await journal.disabled("webhook:good") is None
    status, problem = await call(
        http, relay, "POST", "endpoints/good/disable", json={"tenant": "acme"}
    )
    assert status == 400 and "unknown field(s): tenant" in problem["detail"]
    status, problem = await call(http, relay, "POST", "endpoints/nope/disable")
    assert status == 404 and "bad, good" in problem["detail"]
    status, problem = await call(http, relay, "GET", "endpoints/good/disable")
    assert status == 405 and problem["type"].endswith(":method-not-allowed")
    switches = [r for r in caplog.records if r.name == "relay.audit"]
    assert [getattr(r, "what", {}).get("endpoint") for r in switches][:2] == ["good", "good"]
    # The journal check.
    status, check = await call(http, relay, "GET", "journal/check")
    assert status == 200 and check["ok"] is True
    (item,) = check["items"]
    assert item["problems"] == [] and item["sinks"][BAD] == {"pending": 0, "dead": 5}
    assert item["path"] == str(journal.path)
    # Shards: one static shard, held here, with its tenant.
    status, shards = await call(http, relay, "GET", "shards")
    assert status == 200
    assert shards["mode"] == "static" and shards["shards"] == 1
    assert shards["items"] == [{"shard": 0, "holder": "0", "tenants": ["acme"]}]


async def test_an_unreachable_replica_is_reported_not_skipped(
    emulator: Emulator, tmp_path: Path, receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    # Static sharding over two replicas; replica 1's address has nobody listening.
    s = admin_settings(
        emulator,
        tmp_path,
        receiver,
        sharding={"count": 2, "index": 0},
        gateway={"peer_url": "http://127.0.0.1:9/{index}", "forward_timeout": 2},
    )
    async with running_relay(s) as run:
        status, body = await call(http, run, "GET", "deadletters")
        assert status == 200
        assert body["complete"] is False and body["unreachable"] == ["1"]
        failed = next(p for p in body["replicas"] if p["replica"] == "1")
        assert failed["ok"] is False and "unreachable" in failed["error"]
        assert body["next"] is not None, "replica 1 keeps its place for the next page"
        status, body = await call(http, run, "POST", "endpoints/good/disable")
        assert status == 200 and body["unreachable"] == ["1"]
        assert await run.service.journal.disabled("webhook:good") is not None
        # A replica the request names but presence does not know is never called.
        status, body = await call(http, run, "GET", "journal/check?replica=evil-host")
        assert body["unreachable"] == ["evil-host"]
        assert "not a live replica" in body["replicas"][0]["error"]
