"""Support for the consumer tests: the recipes of ``examples/`` run as the programs they
are (Node, Java, Python subprocesses), fed by a real relay, the emulator and RabbitMQ.

Each recipe prints one JSON line per event it accepted and one per refusal;
:class:`Recipe` collects them. What the relay journaled (read from the journal file)
is the truth they are compared with: a lost event, a refused event or a signature that
does not verify fails the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from relay.emulator import Emulator
from tests.pipeline.support import accounts, control
from tests.support import eventually

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def require_tool(name: str, why: str) -> str:
    """The path of ``name``; a clear failure (never a skip) when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is required for {why}; `bash .ci/test` checks for it", pytrace=False)
    return path


def node_command() -> list[str]:
    node = require_tool("node", "the Node.js consumer recipe (examples/node)")
    modules = EXAMPLES / "node" / "node_modules"
    for package in ("amqplib", "cloudevents", "standardwebhooks"):
        if not (modules / package / "package.json").is_file():
            pytest.fail(
                f"examples/node/node_modules/{package} is missing: run `npm ci` in "
                "examples/node (`bash .ci/test` does)",
                pytrace=False,
            )
    return [node, str(EXAMPLES / "node" / "consumer.js")]


def java_command(build: Path) -> list[str]:
    """Compile the Java recipe with ``javac`` into ``build``; the command that runs it."""
    javac = require_tool("javac", "the Java webhook recipe (examples/java)")
    java = require_tool("java", "the Java webhook recipe (examples/java)")
    source = EXAMPLES / "java" / "WebhookReceiver.java"
    compiled = subprocess.run(
        [javac, "-Xlint:all", "-Werror", "-d", str(build), str(source)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert compiled.returncode == 0, f"javac failed:\n{compiled.stdout}{compiled.stderr}"
    return [java, "-cp", str(build), "WebhookReceiver"]


def python_command() -> list[str]:
    return [sys.executable, str(EXAMPLES / "python" / "consumer.py")]


@dataclass
class Recipe:
    """One consumer recipe running as a subprocess; its JSON lines, as they come."""

    name: str
    command: Sequence[str]
    env: Mapping[str, str]
    log: Path
    accepted: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)
    ready: dict[str, Any] = field(default_factory=dict)
    _proc: asyncio.subprocess.Process | None = None
    _reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Recipe:
        self._stderr = self.log.open("wb")
        self._proc = await asyncio.create_subprocess_exec(
            *self.command,
            env={**os.environ, **self.env},
            stdout=asyncio.subprocess.PIPE,
            stderr=self._stderr,
        )
        self._reader = asyncio.create_task(self._read(), name=f"recipe-{self.name}")
        await eventually(
            lambda: self.ready or self._reader is None or self._reader.done(),
            seconds=60,
            what=f"the {self.name} recipe to be ready",
        )
        if not self.ready:
            await self._reader  # a crash in the reader shows here
            pytest.fail(f"the {self.name} recipe exited: {self.stderr()}", pytrace=False)
        return self

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        while line := await self._proc.stdout.readline():
            record = json.loads(line)
            if "ready" in record:
                self.ready = record["ready"]
            elif "refused" in record:
                self.refused.append(record)
            else:
                self.accepted.append(record)

    def stderr(self) -> str:
        self._stderr.flush()
        return self.log.read_text(errors="replace")[-2000:]

    def ids(self, via: str) -> set[str]:
        return {r["id"] for r in self.accepted if r["via"] == via}

    async def __aexit__(self, *exc: object) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self._proc.wait(), 15)
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._reader, 5)
        self._stderr.close()


@contextlib.asynccontextmanager
async def recipes(*running: Recipe) -> AsyncIterator[tuple[Recipe, ...]]:
    async with contextlib.AsyncExitStack() as stack:
        for recipe in running:
            await stack.enter_async_context(recipe)
        yield running


# Unusual but valid content: what an OA system's mail really holds.
SUBJECTS = (
    "季度报告 Q3",
    'quotes " and \\ backslash',
    "line\nbreak\ttab",
    "emoji 📬✅",
    "",
    "<b>html</b> & ampersand",
    "x" * 300,
    "\u202eright-to-left override",
)


async def traffic(emu: Emulator, journal: Path, *, mails: int, reads: int) -> None:
    """Mail, unread counts and directory changes in the emulator: every event type.

    The emulator coalesces what a listen has not fetched yet (unread counts per account,
    directory changes into one Ver), so each directory step waits for its event."""
    people = await accounts(emu)
    batch = [
        {
            "to": people[n % len(people)],
            "sender": f'"发件人 {n}" <sender{n}@example.com>',
            "subject": SUBJECTS[n % len(SUBJECTS)],
            "summary": f"summary {n}: {SUBJECTS[(n + 3) % len(SUBJECTS)]}",
        }
        for n in range(mails)
    ]
    # One summary over the tenant's max_field_bytes (the tests set 1 KiB): it arrives cut,
    # with data.truncated, and must be as acceptable to the SDKs as any other mail.
    batch.append({"to": people[0], "subject": "long", "summary": "长" * 2000})
    await control(emu, "mail", {"mails": batch})
    for n in range(reads):
        await control(emu, "read", {"user": people[n % len(people)], "count": 1})
    alias = f"newcomer@{people[0].split('@')[1]}"
    steps = [
        ({"action": "add", "alias": alias, "name": "新同事", "parties": [], "slaves": []},
         "exmail.user.added"),
        ({"action": "mod", "alias": alias, "position": '工程师 "CTO"'}, "exmail.user.updated"),
        ({"action": "del", "alias": alias}, "exmail.user.deleted"),
    ]  # fmt: skip
    for change, event_type in steps:
        await control(emu, "user", change)
        await eventually(
            lambda t=event_type: types(journal)[t] >= 1, seconds=30, what=f"an {event_type}"
        )
    await eventually(
        lambda: (
            types(journal)["exmail.mail.new"] >= mails + 1 and types(journal)["exmail.mail.unread"]
        ),
        seconds=30,
        what=f"{mails + 1} mails and an unread count journaled",
    )


def types(path: Path) -> Counter[str]:
    """How many events of each type the journal holds."""
    return Counter(document["type"] for document in journaled(path).values())


def journaled(path: Path) -> dict[str, dict[str, Any]]:
    """Every event in the journal file: id -> its CloudEvent document."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT id, body FROM events").fetchall()
    finally:
        db.close()
    return {row[0]: json.loads(row[1]) for row in rows}


def undelivered(path: Path) -> dict[str, int]:
    """Deliveries not (yet) delivered, per sink: pending and dead rows."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT sink, count(*) FROM deliveries WHERE state != 1 GROUP BY sink"
        ).fetchall()
    finally:
        db.close()
    return dict(rows)
