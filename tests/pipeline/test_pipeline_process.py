"""The relay as a real process: kill -9 during bursts, SIGTERM, bad configuration, demo."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import IO

import aiohttp
import pytest

from relay.cli import main
from relay.emulator import Emulator
from tests.pipeline.support import Broker, Consumer, accounts, control
from tests.support import eventually

PYTHON = sys.executable


def write_config(path: Path, emu: Emulator, broker: Broker, journal: Path) -> Path:
    path.write_text(
        f"""
[journal]
path = "{journal}"
[[tenants]]
name = "acme"
client_id = "admin@example.com"
client_secret = "exmail-demo-key"
api_url = "{emu.api_url}"
token_url = "{emu.token_url}"
login_url = "{emu.login_url}"
hold = 1.0
[amqp]
enabled = true
exchange = "{broker.exchange}"
queue = "{broker.queue}"
[sharding]
mode = "static"
[http]
enabled = false
[log]
level = "warning"
format = "json"
""",
        encoding="utf-8",
    )
    return path


async def start_relay(config: Path, log: IO[bytes]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        PYTHON,
        "-m",
        "relay",
        "run",
        "--config",
        str(config),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=log,
    )


async def listening(emu: Emulator) -> bool:
    state = await control(emu, "state", method="GET")
    return int(state["open_listens"]) > 0


@pytest.mark.rabbitmq
@pytest.mark.timeout(180)
async def test_kill_9_in_bursts_loses_nothing_and_duplicates_share_ids(
    broker: Broker, tmp_path: Path
) -> None:
    async with Emulator(port=0, hold=1.0, redeliver=True) as emu:
        users = await accounts(emu)
        config = write_config(tmp_path / "relay.toml", emu, broker, tmp_path / "journal.sqlite3")
        injected: list[str] = []
        added: list[str] = []
        with (tmp_path / "relay.log").open("ab") as log:
            consumer = await _crash_rounds(emu, users, config, log, broker, injected, added)
    _check_crash_outcome(consumer, injected)


async def _crash_rounds(
    emu: Emulator,
    users: list[str],
    config: Path,
    log: IO[bytes],
    broker: Broker,
    injected: list[str],
    added: list[str],
) -> Consumer:
    async with Consumer(broker) as consumer:
        for round_ in range(3):
            relay = await start_relay(config, log)
            await eventually(lambda: listening(emu), seconds=30, what="the relay to listen")
            for chunk in range(10):
                mails = [
                    {
                        "to": users[(round_ + i) % len(users)],
                        "subject": f"r{round_} c{chunk} {i}",
                    }
                    for i in range(20)
                ]
                answer = await control(emu, "mail", {"mails": mails})
                injected.extend(answer["mail_ids"])
                if chunk == 5:
                    relay.send_signal(signal.SIGKILL)  # mid-burst
                await asyncio.sleep(0.01)  # pacing: chunks in separate listen answers
            assert await relay.wait() == -signal.SIGKILL
            # The directory changes while the relay is dead.
            alias = f"hire{round_}@example.com"
            await control(emu, "user", {"action": "add", "alias": alias, "name": alias})
            added.append(alias)
        relay = await start_relay(config, log)
        try:
            mail_ids = set(injected)

            def seen() -> set[str]:
                return {
                    json.loads(m.body)["data"]["mail_id"]
                    for m in consumer.messages
                    if m.type == "exmail.mail.new"
                }

            await eventually(lambda: mail_ids <= seen(), seconds=60, what="every injected mail")
            await eventually(
                lambda: (
                    {
                        json.loads(m.body)["subject"]
                        for m in consumer.messages
                        if m.type == "exmail.user.added"
                    }
                    >= set(added)
                ),
                seconds=30,
                what="every directory change",
            )
        finally:
            relay.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(relay.wait(), 15) == 0
    return consumer


def _check_crash_outcome(consumer: Consumer, injected: list[str]) -> None:
    ids_by_mail: dict[str, set[str]] = {}
    for message in consumer.messages:
        if message.type == "exmail.mail.new":
            doc = json.loads(message.body)
            ids_by_mail.setdefault(doc["data"]["mail_id"], set()).add(doc["id"])
    assert len(injected) == 600
    assert set(ids_by_mail) == set(injected)
    assert all(len(ids) == 1 for ids in ids_by_mail.values()), "duplicates carry the same id"
    mail_messages = sum(1 for m in consumer.messages if m.type == "exmail.mail.new")
    duplicates = mail_messages - len(injected)
    assert duplicates >= 0
    print(f"kill -9 x3 during 600 mails: {duplicates} duplicate deliveries")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "relay", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "RELAY_CONFIG": ""},
    )


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[journal\n", "invalid TOML"),
        ("[http]\nport = 'x'\n", "http.port"),
        ("[http]\nbogus = 1\n", "http.bogus"),
        (
            "[[tenants]]\nname = 'Bad Name'\nclient_id = 'a@b.c'\nclient_secret = 'k'\n",
            "tenants[0].name",
        ),
        ("[[tenants]]\nname = 'a'\nclient_id = 'a@b.c'\n", "client_secret"),
        (
            "[[tenants]]\nname = 'a'\nclient_id = 'a@b.c'\nclient_secret_file = '/nonexistent/s'\n",
            "cannot read /nonexistent/s",
        ),
        ("[amqp]\nurl = 'http://x'\n", "amqp"),
        # Lease mode (the default with [amqp]) without the deployment secret: how to get one.
        ("[amqp]\nenabled = true\n", "openssl rand -base64 32"),
        ("[sharding]\nsecret = 'short'\n", "at least 16 characters"),
        ("[sharding]\nreplica_id = '10.0.0.1:80/#'\n", "sharding.replica_id"),
        ("[journal]\nretention = 'soon'\n", "journal.retention"),
        (
            "[[webhooks]]\nname = 'h'\nurl = 'ftp://x'\n"
            "secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'\n",
            "webhooks[0].url",
        ),
        (
            "[[webhooks]]\nname = 'h'\nurl = 'http://x/'\nsecret = 'nope'\n",
            "whsec_",
        ),
    ],
)
def test_bad_config_stops_startup_with_one_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], toml: str, expected: str
) -> None:
    config = tmp_path / "relay.toml"
    config.write_text(toml, encoding="utf-8")
    assert main(["run", "--config", str(config)]) == 2  # bad input, like a bad argument
    err = capsys.readouterr().err
    assert err.startswith("exmail-relay run: error: ")
    assert expected in err
    assert "Traceback" not in err


def test_missing_config_file_and_bad_arguments_exit_non_zero(tmp_path: Path) -> None:
    missing = run_cli("run", "--config", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad = run_cli("run", "--bogus")
    assert bad.returncode == 2
    assert "unrecognized arguments: --bogus" in bad.stderr
    demo = run_cli("demo", "--port", "70000")
    assert demo.returncode == 2
    assert "not a TCP port" in demo.stderr


async def test_demo_streams_events_and_stops_cleanly_on_ctrl_c() -> None:
    proc = await asyncio.create_subprocess_exec(
        PYTHON,
        "-m",
        "relay",
        "demo",
        "--port",
        "0",
        "--interval",
        "0.05",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    try:
        announce = ""
        while "status page" not in announce:
            announce = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
        url = announce.split("status page ")[1].split(" ")[0]
        events = []
        while sum(1 for e in events if e["type"] == "exmail.mail.new") < 3:
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            events.append(json.loads(line))
        async with aiohttp.ClientSession() as session:
            async with session.get(url + "readyz") as resp:
                assert resp.status == 200
            async with session.get(url + "status.json") as resp:
                status = await resp.json()
        assert status["tenants"][0]["name"] == "demo"
        assert status["tenants"][0]["state"] == "connected"
    finally:
        proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(proc.wait(), 20)
    assert code == 0
    assert all(e["specversion"] == "1.0" for e in events)


def test_unusable_journal_path_and_busy_port_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "relay.toml"
    config.write_text('[journal]\npath = "/proc/no-such-dir/j.sqlite3"\n', encoding="utf-8")
    assert main(["run", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("exmail-relay run: error: cannot open journal /proc/no-such-dir/")
    assert "Traceback" not in err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config.write_text(
            f'[journal]\npath = "{tmp_path / "j.sqlite3"}"\n[http]\nport = {port}\n',
            encoding="utf-8",
        )
        assert main(["run", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert f"cannot serve [http] on 127.0.0.1:{port}" in err
    assert "Traceback" not in err
