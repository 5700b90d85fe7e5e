"""``exmail-relay api`` and ``sso-url`` with ``--relay URL``, as subprocesses against a
running relay and the emulator: they go through the gateway, so the emulator's token
fetches do not move (the relay's listener keeps its token); problems print one line
and exit 1; a missing key exits 2."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import aiohttp

from relay.app.wiring import Running
from relay.emulator import Emulator
from tests.gateway.conftest import PORTAL_KEY, READER_KEY, WRITER_KEY, base, requests_to

ROOT = Path(__file__).resolve().parents[2]


async def cli(*args: str, **env: str) -> tuple[int, str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relay", *args,
        env={**clean, **env}, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_api_and_sso_url_go_through_the_relay(
    relay: Running, emulator: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    url = base(relay)
    await relay.service.listeners[0].client.token()
    assert await requests_to(http, emulator, "/cgi-bin/token") == 1
    key_file = tmp_path / "key"
    key_file.write_text(WRITER_KEY + "\n")
    # writer: acme only, so --tenant may be left out; the key from a file
    code, out, err = await cli(
        "api", "--relay", url, "--key-file", str(key_file), "user/get", "alias=alice@example.com"
    )
    assert code == 0, err
    assert json.loads(out)["Alias"] == "alice@example.com"
    assert err == ""  # no warning: no token of its own
    # a list parameter, the key from the environment
    code, out, err = await cli(
        "api", "--relay", url, "--tenant", "acme", "user/check",
        "email=alice@example.com", "email=nobody@example.com",
        RELAY_CLIENT_KEY=PORTAL_KEY,
    )  # fmt: skip
    assert code == 0, err
    assert "alice@example.com" in out
    code, out, err = await cli(
        "sso-url", "--relay", url, "--tenant", "acme", "bob@example.com",
        RELAY_CLIENT_KEY=PORTAL_KEY,
    )  # fmt: skip
    assert code == 0, err
    assert out.startswith(emulator.login_url) and "user=bob@example.com" in out
    assert await requests_to(http, emulator, "/cgi-bin/token") == 1


async def test_problems_are_one_line_and_exit_1_missing_key_exits_2(
    relay: Running, http: aiohttp.ClientSession, emulator: Emulator
) -> None:
    url = base(relay)
    code, out, err = await cli(
        "api", "--relay", url, "--tenant", "acme", "user/sync", "action=2",
        "alias=new@example.com", RELAY_CLIENT_KEY=PORTAL_KEY,
    )  # fmt: skip
    assert code == 1 and out == ""
    assert err.strip().count("\n") == 0
    assert "Missing scope" in err and "'write'" in err
    code, _, err = await cli(
        "api", "--relay", url, "--tenant", "acme", "user/get", "alias=alice@example.com",
        RELAY_CLIENT_KEY=READER_KEY,
    )  # fmt: skip
    assert code == 1 and "Tenant not allowed" in err
    code, _, err = await cli(
        "api", "--relay", url, "--tenant", "acme", "user/get", "alias=alice@example.com",
        RELAY_CLIENT_KEY="not-a-key-of-any-client",
    )  # fmt: skip
    assert code == 1 and "401" in err and "not-a-key" not in err
    code, _, err = await cli("sso-url", "--relay", url, "bob@example.com")
    assert code == 2 and "RELAY_CLIENT_KEY" in err
    code, _, err = await cli(
        "sso-url", "--relay", "ftp://x", "bob@example.com", RELAY_CLIENT_KEY=PORTAL_KEY
    )
    assert code == 2 and "--relay must be an http(s) URL" in err
    assert await requests_to(http, emulator, "/cgi-bin/token") <= 1
