"""Request bodies arrive whole or not at all (:mod:`relay.gateway.request_body`), on a real
relay over loopback, with bodies written by hand on a raw socket: in two pieces with a
pause between (the emulator then holds the whole value), shorter than their
``Content-Length`` (nothing reaches Exmail), over ``max_body_bytes`` (413), nested too
deeply (400, never a 500). Every refusal is problem+json and has its audit line."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
import pytest

from relay.app.wiring import Running
from relay.emulator import Emulator
from tests.gateway.conftest import (
    PORTAL_KEY,
    TOKEN_KEY,
    WRITER_KEY,
    aliases,
    base,
    bearer,
    gateway_settings,
    requests_to,
)
from tests.gateway.test_gateway_forwarding import ZED, two_replicas
from tests.support import eventually, running_relay

POSITION = "P" * 3000  # the 3 KB Position of the report


async def raw_request(
    url: str,
    method: str,
    path: str,
    headers: dict[str, str],
    pieces: list[bytes],
    *,
    pause: float = 0.3,
    close_early: bool = False,
) -> tuple[int, dict[str, str], bytes]:
    """Send a request by hand: the head, then each piece of the body with ``pause``
    between (separate TCP segments). ``close_early``: close after the last piece and
    answer status 0 (the client is gone; it reads nothing)."""
    where = urlsplit(url)
    assert where.hostname is not None and where.port is not None
    reader, writer = await asyncio.open_connection(where.hostname, where.port)
    try:
        head = f"{method} {path} HTTP/1.1\r\nHost: {where.netloc}\r\nConnection: close\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        writer.write(head.encode())
        for index, piece in enumerate(pieces):
            if index:
                await writer.drain()
                await asyncio.sleep(pause)  # the next piece is a separate TCP segment
            writer.write(piece)
        await writer.drain()
        if close_early:
            return 0, {}, b""
        raw = await asyncio.wait_for(reader.read(), timeout=20)
    finally:
        writer.close()
    head_bytes, _, body = raw.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    answer = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
    return status, answer, body


def audited(caplog: pytest.LogCaptureFixture, status: int) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "relay.gateway.audit" and getattr(r, "status", None) == status
    ]


def problem(status: int, headers: dict[str, str], body: bytes, expected: int) -> dict[str, Any]:
    assert status == expected, body
    assert headers["content-type"].startswith("application/problem+json")
    data: dict[str, Any] = json.loads(body)
    assert data["status"] == expected
    return data


async def stored_position(http: aiohttp.ClientSession, run: Running, alias: str) -> str:
    async with http.get(
        f"{base(run)}/v1/tenants/acme/users/{alias}", headers=bearer(PORTAL_KEY)
    ) as resp:
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["position"])


async def test_a_form_sent_in_two_pieces_reaches_exmail_whole(
    relay: Running, http: aiohttp.ClientSession, emulator: Emulator
) -> None:
    domain = (await aliases(http, emulator))[0].split("@")[1]
    alias = f"two.pieces@{domain}"
    form = urlencode(
        {"Action": "2", "Alias": alias, "Name": "Two", "Password": "Secret-123456",
         "Position": POSITION}
    ).encode()  # fmt: skip
    status, _, body = await raw_request(
        base(relay),
        "POST",
        "/v1/tenants/acme/openapi/user/sync",
        {
            **bearer(WRITER_KEY),
            "Content-Type": "application/x-www-form-urlencoded",
            "Content-Length": str(len(form)),
        },
        [form[:400], form[400:]],
    )
    assert status == 200, body
    assert await stored_position(http, relay, alias) == POSITION  # all 3000 characters


async def test_a_body_shorter_than_its_length_never_reaches_exmail(
    relay: Running,
    http: aiohttp.ClientSession,
    emulator: Emulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="relay.gateway.audit")
    domain = (await aliases(http, emulator))[0].split("@")[1]
    alias = f"cut.short@{domain}"
    # A complete-looking form, but the client promised 3000 bytes and closes after these.
    form = urlencode({"Action": "2", "Alias": alias, "Password": "Secret-123456"}).encode()
    before = await requests_to(http, emulator, "/openapi/user/sync")
    await raw_request(
        base(relay),
        "POST",
        "/v1/tenants/acme/openapi/user/sync",
        {
            **bearer(WRITER_KEY),
            "Content-Type": "application/x-www-form-urlencoded",
            "Content-Length": "3000",
        },
        [form],
        close_early=True,
    )
    lines = await eventually(lambda: audited(caplog, 400), what="the audit line of the cut body")
    assert lines[0].route == "POST /v1/tenants/{tenant}/openapi/{operation}"  # type: ignore[attr-defined]
    assert await requests_to(http, emulator, "/openapi/user/sync") == before
    assert alias not in await aliases(http, emulator)


async def test_bodies_over_max_body_bytes_are_413_declared_or_counted(
    emulator: Emulator,
    tmp_path: Path,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="relay.gateway.audit")
    settings = gateway_settings(emulator, tmp_path, gateway={"max_body_bytes": 2048})
    async with running_relay(settings) as run:
        path = "/v1/tenants/acme/sso"
        json_head = {**bearer(PORTAL_KEY), "Content-Type": "application/json"}
        # Declared too large: refused before a byte of the body is sent.
        status, headers, body = await raw_request(
            base(run), "POST", path, {**json_head, "Content-Length": "5000000"}, []
        )
        assert problem(status, headers, body, 413)["limit"] == 2048
        # No length (chunked), growing past the limit: refused, and nothing was asked.
        before = await requests_to(http, emulator, "/openapi/mail/authkey")
        big = json.dumps({"email": ZED, "pad": "x" * 3000}).encode()
        chunks = [f"{len(big[:1500]):x}\r\n".encode() + big[:1500] + b"\r\n"]
        chunks.append(f"{len(big[1500:]):x}\r\n".encode() + big[1500:] + b"\r\n0\r\n\r\n")
        status, headers, body = await raw_request(
            base(run), "POST", path, {**json_head, "Transfer-Encoding": "chunked"}, chunks
        )
        problem(status, headers, body, 413)
        # The token service is bounded by the same key.
        stale = json.dumps({"stale": "t" * 3000}).encode()
        status, headers, body = await raw_request(
            base(run),
            "POST",
            "/v1/tenants/acme/token/refresh",
            {**bearer(TOKEN_KEY), "Content-Type": "application/json",
             "Content-Length": str(len(stale))},
            [stale[:100], stale[100:]],
        )  # fmt: skip
        problem(status, headers, body, 413)
        assert await requests_to(http, emulator, "/openapi/mail/authkey") == before
    assert len(audited(caplog, 413)) == 3


async def test_deeply_nested_or_malformed_json_is_400_with_an_audit_line(
    relay: Running,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="relay.gateway.audit")
    deep = b"[" * 30_000 + b"]" * 30_000
    cases = [
        ("/v1/tenants/acme/openapi/user/get", PORTAL_KEY, deep),
        ("/v1/tenants/acme/openapi/user/get", PORTAL_KEY, b'{"alias": '),
        ("/v1/tenants/acme/openapi/user/get", PORTAL_KEY, b"\xff\xfe{}"),
        ("/v1/tenants/acme/token/refresh", TOKEN_KEY, b'{"stale": ' + deep + b"}"),
    ]
    for path, key, raw in cases:
        async with http.post(
            base(relay) + path,
            data=raw,
            headers={**bearer(key), "Content-Type": "application/json"},
        ) as resp:
            assert resp.status == 400, (path, raw[:20], await resp.text())
            assert resp.content_type == "application/problem+json"
            assert (await resp.json())["type"].endswith(":invalid-request")
    assert len(audited(caplog, 400)) == len(cases)
    assert not audited(caplog, 500)


async def test_a_forwarded_body_sent_in_two_pieces_is_forwarded_whole(
    emulator: Emulator, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with two_replicas(emulator, tmp_path, http, peers=True) as (zero, _one):
        body = json.dumps({"email": ZED, "note": "n" * 2000}).encode()
        status, _, answer = await raw_request(
            base(zero),
            "POST",
            "/v1/tenants/zeta/sso",  # zeta is replica 1's: replica 0 forwards it
            {**bearer(PORTAL_KEY), "Content-Type": "application/json",
             "Content-Length": str(len(body))},
            [body[:300], body[300:]],
        )  # fmt: skip
        assert status == 200, answer
        assert "user=zed@zeta.test&" in json.loads(answer)["url"]
