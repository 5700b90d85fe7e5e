"""SIGTERM during a burst: ``exmail-relay run`` exits 0 within seconds and, after a restart
on the same journal, every injected mail is in the RabbitMQ queue."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import aiohttp
import pytest

from relay.emulator import Emulator
from tests.ops.conftest import ADMIN, BROKER, KEY, Control, eventually

ROOT = Path(__file__).resolve().parents[2]
MAILS = 60


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    # The real server replays nothing: a listen answer that arrives just as SIGTERM cancels
    # the poll is gone before the relay could accept it. Redelivery mode hands such an
    # answer to the restarted relay (new token), so this test can demand every mail.
    async with Emulator(port=0, hold=0.5, redeliver=True) as emu:
        yield emu


def write_config(tmp_path: Path, emulator: Emulator, sinks: str) -> Path:
    """relay.toml for one tenant on ``emulator``, HTTP on a free port, JSON logs, plus
    ``sinks`` (TOML sections)."""
    config = tmp_path / "relay.toml"
    config.write_text(
        f"""
[journal]
path = "{tmp_path / "journal.sqlite3"}"
[[tenants]]
name = "acme"
client_id = "{ADMIN}"
client_secret = "{KEY}"
api_url = "{emulator.api_url}"
token_url = "{emulator.token_url}"
login_url = "{emulator.login_url}"
hold = 0.5
[http]
port = 0
[log]
format = "json"
"""
        + sinks
    )
    return config


async def start_relay(config: Path) -> tuple[asyncio.subprocess.Process, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "relay",
        "run",
        "--config",
        str(config),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    while True:
        line = await asyncio.wait_for(proc.stderr.readline(), 20)
        assert line, "relay exited before serving"
        record = json.loads(line)
        if record["message"] == "serving health and status":
            return proc, str(record["url"])


async def drain_stderr(proc: asyncio.subprocess.Process) -> list[str]:
    assert proc.stderr is not None
    return (await proc.stderr.read()).decode().splitlines()


@pytest.mark.rabbitmq
@pytest.mark.slow
async def test_sigterm_during_burst_loses_nothing(
    tmp_path: Path,
    emulator: Emulator,
    control: Control,
    http: aiohttp.ClientSession,
    amqp_names: tuple[str, str],
) -> None:
    exchange, queue = amqp_names
    config = write_config(
        tmp_path,
        emulator,
        f"""
[amqp]
enabled = true
url = "{BROKER}"
exchange = "{exchange}"
queue = "{queue}"
[sharding]
mode = "static"
[shutdown]
timeout = 3
""",
    )
    aliases = await control.aliases()
    proc, url = await start_relay(config)
    stderr_task = asyncio.ensure_future(drain_stderr(proc))

    async def ready() -> bool:
        async with http.get(url + "readyz") as resp:
            return resp.status == 200

    await eventually(ready, what="relay ready")

    sent: list[int] = []

    async def burst() -> None:
        for index in range(MAILS):
            await control.mail(aliases[index % len(aliases)])
            sent.append(index)
            await asyncio.sleep(0.01)  # a steady trickle, so SIGTERM lands mid-burst

    sender = asyncio.ensure_future(burst())
    await eventually(lambda: len(sent) >= MAILS // 4, what="a quarter of the burst sent")
    loop = asyncio.get_running_loop()
    started = loop.time()
    proc.send_signal(signal.SIGTERM)
    code = await asyncio.wait_for(proc.wait(), 15)
    took = loop.time() - started
    logs = await stderr_task
    await sender
    assert code == 0, "".join(logs[-20:])
    assert took < 8, f"shutdown took {took:.1f}s"
    assert any('"relay stopped"' in line for line in logs)

    proc, url = await start_relay(config)
    stderr_task = asyncio.ensure_future(drain_stderr(proc))
    seen: set[str] = set()
    try:
        connection = await aio_pika.connect(BROKER, timeout=5)
        async with connection:
            channel = await connection.channel()
            q = await channel.get_queue(queue, ensure=True)

            async def all_mail_queued() -> bool:
                while (message := await q.get(no_ack=True, fail=False)) is not None:
                    body = json.loads(message.body)
                    assert message.message_id == body["id"]
                    if body["type"] == "exmail.mail.new":
                        seen.add(body["data"]["mail_id"])
                return len(seen) >= MAILS

            await eventually(all_mail_queued, seconds=30, what=f"{MAILS} mails in the queue")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 15)
        await stderr_task
    assert len(seen) == MAILS
    assert code == 0


async def test_run_freezes_the_heap_once_listeners_have_started(
    tmp_path: Path, emulator: Emulator
) -> None:
    """``run`` moves the start-up heap out of the garbage collector's way (relay.runtime.heap)
    once the tenant's first listen is answered, says so, and still stops cleanly."""
    config = write_config(tmp_path, emulator, "[console]\nenabled = true\n")
    proc, _ = await start_relay(config)
    assert proc.stderr is not None
    try:
        while True:
            line = await asyncio.wait_for(proc.stderr.readline(), 20)
            assert line, "relay exited before freezing its heap"
            record = json.loads(line)
            if record["message"] == "heap frozen after start-up":
                break
        assert record["objects"] > 10_000, record
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 15)
    assert code == 0
