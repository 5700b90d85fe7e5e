"""Two ``exmail-relay run`` on one journal: the second exits with one line naming the
first, the file commands meant for a running relay still work, ``journal salvage``
refuses, and a ``kill -9`` leaves nothing that blocks the next start. Real processes,
the real emulator; the console sink (no broker)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from relay.emulator import Emulator
from tests.ops.conftest import KEY
from tests.ops.test_ops_shutdown import ROOT, drain_stderr, start_relay, write_config

SINKS = "[console]\nenabled = true\n"


@dataclass(frozen=True)
class Done:
    code: int
    out: str
    err: str


async def cli(*args: str, seconds: float = 30.0) -> Done:
    """``exmail-relay ARGS`` as its own process; killed (and the test failed) if it is
    still running after ``seconds``: a second relay that was not refused runs forever."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "relay",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), seconds)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(
            f"exmail-relay {' '.join(args)} still runs after {seconds:g}s"
        ) from None
    assert proc.returncode is not None
    return Done(proc.returncode, out.decode(), err.decode())


async def test_a_second_run_exits_naming_the_first_and_file_commands_still_work(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "journal.sqlite3"
    async with Emulator(port=0, hold=0.5) as emulator:
        config = write_config(tmp_path, emulator, SINKS)
        first, url = await start_relay(config)
        logs = asyncio.ensure_future(drain_stderr(first))
        try:
            second = await cli("run", "--config", str(config))
            # The commands meant to work beside a running relay do.
            listing = await cli("deadletters", "list", "--config", str(config))
            check = await cli("journal", "check", "--journal", str(journal))
            # A salvage would copy a file the relay goes on writing: refused.
            salvage = await cli(
                "journal", "salvage", str(tmp_path / "new.sqlite3"), "--config", str(config)
            )
            async with aiohttp.ClientSession() as http, http.get(url + "readyz") as resp:
                first_ready = resp.status
            tokens = {listen.token for listen in emulator.listens()}
            held = (tmp_path / "journal.sqlite3.lock").read_text(encoding="utf-8")
            api_url = emulator.api_url
        finally:
            first.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(first.wait(), 20)
            await logs
    assert code == 0

    assert second.code == 1, second.err
    assert second.out == ""
    lines = second.err.splitlines()
    assert len(lines) == 1, lines
    prefix = (
        f"exmail-relay run: error: journal {journal} is in use by another exmail-relay"
        f" (pid {first.pid} on host {socket.gethostname()}, since "
    )
    assert lines[0].startswith(prefix), lines[0]
    assert lines[0].endswith("); stop it first, or point [journal] path elsewhere"), lines[0]
    assert KEY not in second.err
    # The second never listened: the first's token is the only one Exmail handed out.
    assert first_ready == 200
    assert len(tokens) == 1, tokens

    assert listing.code == 0, listing.err
    assert "no dead letters" in listing.out + listing.err
    assert check.code == 0, check.err
    assert "integrity: ok" in check.out

    assert salvage.code == 1, salvage.out
    assert salvage.err.startswith(
        f"exmail-relay journal: error: journal {journal} is in use by another exmail-relay"
        f" (pid {first.pid} on host "
    ), salvage.err
    assert not (tmp_path / "new.sqlite3").exists()

    # The lock file says who holds it, and nothing from the configuration.
    holder = json.loads(held)
    assert set(holder) == {"pid", "host", "since", "command"}
    assert holder["pid"] == first.pid
    assert holder["command"] == "run"
    assert KEY not in held
    assert api_url not in held


async def test_after_kill_9_the_next_run_starts_on_the_same_journal(tmp_path: Path) -> None:
    lock = tmp_path / "journal.sqlite3.lock"
    async with Emulator(port=0, hold=0.5) as emulator:
        config = write_config(tmp_path, emulator, SINKS)
        first, _ = await start_relay(config)
        first.kill()
        assert await asyncio.wait_for(first.wait(), 10) == -signal.SIGKILL
        assert json.loads(lock.read_text())["pid"] == first.pid  # stale, and no obstacle
        again, url = await start_relay(config)
        logs = asyncio.ensure_future(drain_stderr(again))
        try:
            async with aiohttp.ClientSession() as http, http.get(url + "readyz") as resp:
                assert resp.status == 200
            assert json.loads(lock.read_text())["pid"] == again.pid
        finally:
            again.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(again.wait(), 20)
            records = [json.loads(line) for line in await logs]
    assert code == 0
    assert "journal single-writer guard is off" not in {r["message"] for r in records}
