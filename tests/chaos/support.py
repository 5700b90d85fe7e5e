"""The chaos group's harness: the relay as a real process, its journal on a small
filesystem of its own (a tmpfs, mounted here and filled for real), the emulator on
loopback, RabbitMQ behind a loopback proxy, and an independent consumer counting
every copy that arrives.

Mounting needs root (CAP_SYS_ADMIN), as on the CI machine; the fixture fails, never
skips, when it cannot mount.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import standardwebhooks
from aiohttp import web

from relay.emulator import Emulator
from tests.pipeline.support import Broker, Consumer

PYTHON = sys.executable


@dataclass
class SmallDisk:
    """A tmpfs of ``size`` bytes at ``path``; :meth:`fill` takes every free byte."""

    path: Path
    filler: Path

    def fill(self) -> int:
        """Write the filler until the filesystem says it is full; the bytes written."""
        written = 0
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (65536, 4096, 1):  # big steps, then whatever a page left
                chunk = b"\0" * size
                while True:
                    try:
                        written += os.write(fd, chunk)
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
        finally:
            os.close(fd)
        return written

    def make_room(self) -> None:
        self.filler.unlink(missing_ok=True)


# Larger than SQLite's write-ahead log grows before its automatic checkpoint (1000
# pages, 4 MB): once room is made, the journal must fit again. Filling is instant.
@contextlib.contextmanager
def small_disk(where: Path, size: str = "32m") -> Iterator[SmallDisk]:
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, f"cannot mount a tmpfs (the chaos tests need root): {done}"
    try:
        yield SmallDisk(where, where / "filler")
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(path: Path, emu: Emulator, sink: str, *, journal: Path, port: int) -> Path:
    """A relay configuration: one tenant on ``emu``, the sink section ``sink`` (see
    :func:`amqp_section`, :func:`webhook_section`), health on ``port``."""
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
{sink}
[http]
port = {port}
[log]
level = "info"
format = "json"
""",
        encoding="utf-8",
    )
    return path


def amqp_section(broker: Broker, url: str) -> str:
    return (
        f'[amqp]\nenabled = true\nurl = "{url}"\n'
        f'exchange = "{broker.exchange}"\nqueue = "{broker.queue}"\n'
        # One relay that runs its tenants all along; lease mode has its own tests.
        '[sharding]\nmode = "static"'
    )


def webhook_section(url: str, secret: str, **extra: object) -> str:
    lines = [f'[[webhooks]]\nname = "erp"\nurl = "{url}"\nsecret = "{secret}"']
    lines += [f"{key} = {value}" for key, value in extra.items()]
    return "\n".join(lines)


class RelayProcess:
    """``exmail-relay run`` as a child process, its stderr (JSON lines) in a file."""

    def __init__(self, config: Path, log: Path, port: int) -> None:
        self.config = config
        self.log = log
        self.url = f"http://127.0.0.1:{port}/"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                PYTHON,
                "-m",
                "relay",
                "run",
                "--config",
                str(self.config),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=err,
            )

    async def stop(self) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), 30)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def get(self, path: str) -> tuple[int, Any]:
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(self.url + path, timeout=aiohttp.ClientTimeout(total=10)) as resp,
            ):
                return resp.status, await resp.json()
        except aiohttp.ClientError as exc:
            return 0, str(exc)

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for raw in self.log.read_text(encoding="utf-8", errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                lines.append(json.loads(raw))
        return lines


@contextlib.asynccontextmanager
async def relay_process(config: Path, log: Path, port: int) -> AsyncIterator[RelayProcess]:
    relay = RelayProcess(config, log, port)
    await relay.start()
    try:
        yield relay
    finally:
        if relay.alive:
            code = await relay.stop()
            assert code == 0, f"relay exited {code}; see {log}"


def copies(consumer: Consumer) -> Counter[str]:
    """How many copies of each mail the consumer received."""
    return Counter(
        json.loads(m.body)["data"]["mail_id"]
        for m in consumer.messages
        if m.type == "exmail.mail.new"
    )


def unique_broker() -> Broker:
    name = f"test.chaos.{uuid.uuid4().hex[:10]}"
    return Broker(exchange=name, queue=name)


class HookReceiver:
    """A real webhook endpoint on loopback: checks each signature with the
    ``standardwebhooks`` package and counts the copies of each mail it accepts."""

    def __init__(self, secret: str) -> None:
        self.verifier = standardwebhooks.Webhook(secret)
        self.mails: Counter[str] = Counter()
        self.bad_signatures = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            doc = self.verifier.verify(body, dict(request.headers))
        except standardwebhooks.webhooks.WebhookVerificationError:
            self.bad_signatures += 1
            return web.Response(status=400)
        if doc.get("type") == "exmail.mail.new":
            self.mails[doc["data"]["mail_id"]] += 1
        return web.Response(status=204)

    async def __aenter__(self) -> HookReceiver:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/hook"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def make_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()
