"""``deadletters``, ``endpoint`` and ``journal check`` with ``--relay URL``: the real
command line against a running relay's admin API (its dead letters made by a real
receiver that fails deliveries), the token from ``$RELAY_ADMIN_TOKEN`` or a file, bad
arguments exiting 2 with one clear line, an unreachable relay exiting 1."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest

from relay.app.wiring import Running
from relay.cli.main import main as cli_main
from tests.ops.test_ops_admin import TOKEN, relay
from tests.webhook.conftest import Answer, Receiver, receiver

__all__ = ["receiver", "relay"]


def base(run: Running) -> str:
    assert run.server is not None
    return run.server.url.rstrip("/")


async def cli(*argv: str) -> int:
    return await asyncio.to_thread(cli_main, list(argv))


async def test_the_commands_work_through_the_admin_api(
    relay: Running,
    receiver: Receiver,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RELAY_ADMIN_TOKEN", TOKEN)
    url = ["--relay", base(relay)]
    assert await cli("deadletters", "list", "--json", *url) == 0
    listed = json.loads(capsys.readouterr().out)
    assert len(listed) == 5 and {d["replica"] for d in listed} == {"0"}
    assert await cli("deadletters", "list", "--tenant", "beta", "--limit", "1", *url) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:2] == ["REPLICA", "ENDPOINT"] and len(table) == 2
    # Replay one (the endpoint answers now), then drop beta's.
    receiver.defaults["bad"] = Answer(200)
    one = next(d["event_id"] for d in listed if d["tenant"] == "acme")
    assert await cli("deadletters", "replay", "--id", one, "--endpoint", "bad", *url) == 0
    assert "1 dead letter(s) queued" in capsys.readouterr().err
    (delivered,) = await receiver.wait_for("bad", 1, status=200)
    assert delivered.headers["webhook-id"] == one
    # The token from a file this time, not the environment.
    monkeypatch.delenv("RELAY_ADMIN_TOKEN")
    token_file = tmp_path / "admin-token"
    token_file.write_text(TOKEN + "\n")
    by_file = [*url, "--admin-token-file", str(token_file)]
    assert await cli("deadletters", "drop", "--endpoint", "bad", "--tenant", "beta", *by_file) == 0
    assert "2 dead letter(s) of webhook:bad dropped" in capsys.readouterr().err
    assert len(await relay.service.journal.dead_letters()) == 2
    # Endpoints, on every replica.
    assert await cli("endpoint", "disable", "good", *by_file) == 0
    assert "endpoint good disabled on replica 0 (was enabled)" in capsys.readouterr().out
    assert await relay.service.journal.disabled("webhook:good") is not None
    assert await cli("endpoint", "enable", "good", *by_file) == 0
    assert await relay.service.journal.disabled("webhook:good") is None
    # The journal check.
    capsys.readouterr()
    assert await cli("journal", "check", *by_file) == 0
    out = capsys.readouterr().out
    assert "replica 0: journal" in out and "integrity: ok" in out
    assert "sink webhook:bad: 0 pending, 2 dead" in out
    # The relay's refusals come back as one line, exit 1.
    assert await cli("endpoint", "disable", "nope", *by_file) == 1
    assert "the relay answered 404: Unknown endpoint" in capsys.readouterr().err


async def test_bad_arguments_exit_2_and_an_unreachable_relay_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("RELAY_ADMIN_TOKEN", raising=False)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    nowhere = f"http://127.0.0.1:{port}"
    assert await cli("deadletters", "list", "--relay", nowhere) == 2
    assert "RELAY_ADMIN_TOKEN" in capsys.readouterr().err
    monkeypatch.setenv("RELAY_ADMIN_TOKEN", TOKEN)
    cases = [
        (["deadletters", "list", "--relay", "ftp://x"], "--relay must be an http(s) URL"),
        (
            ["deadletters", "list", "--relay", nowhere, "--journal", str(tmp_path / "j")],
            "--relay and --journal are exclusive",
        ),
        (["journal", "check", "--admin-token-file", "x"], "--admin-token-file goes with --relay"),
        (["deadletters", "list", "--journal", "j", "--replica", "1"], "--replica goes with"),
        (["deadletters", "list", "--relay", nowhere, "--limit", "0"], "--limit: at least 1"),
        (["deadletters", "list", "--relay", nowhere, "--since", "soon"], "--since: 'soon'"),
        (
            ["endpoint", "enable", "a", "--relay", nowhere, "--admin-token-file", "/nonexist"],
            "cannot read --admin-token-file",
        ),
    ]
    for argv, message in cases:
        assert await cli(*argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and TOKEN not in err, (argv, err)
    assert await cli("journal", "check", "--relay", nowhere) == 1
    err = capsys.readouterr().err
    assert f"cannot reach the relay at {nowhere}" in err and TOKEN not in err
