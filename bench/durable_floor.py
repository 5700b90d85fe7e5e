"""The durable floor baseline: ``python -m bench.durable_floor SPEC.json`` (issue 20).

The floor (:mod:`bench.floor`) plus the least a relay must do to lose nothing across a
crash: one SQLite journal in WAL mode. Per ``listen`` answer, its reminders are inserted
in one transaction (``synchronous=FULL``, so they survive a power loss) before the next
``listen``; then published with aio-pika (publisher confirms, persistent, mandatory)
and marked delivered in one more transaction (``synchronous=NORMAL``: a lost mark only
means a re-publish, which at-least-once allows; the relay commits its outcomes the same
way). SQLite runs on one dedicated thread, as the relay's journal writer does, so an
fsync never blocks the event loop. No metrics, validation, routing or retries beyond a
new token. It is what the relay's durability is measured against: the relay's CPU per
event above this figure is the price of everything else it does.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp

from bench.cloudevent import mail_event
from bench.floor import fetch_token

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    body BLOB NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0
)
"""


class Journal:
    """One SQLite connection owned by one thread; every call hops to that thread."""

    def __init__(self, path: Path) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        self._path = path
        self._db: sqlite3.Connection | None = None

    def _open(self) -> None:
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(SCHEMA)
        self._db = db

    def _append(self, rows: list[tuple[str, str, bytes]]) -> None:
        assert self._db is not None
        db = self._db
        db.execute("PRAGMA synchronous=FULL")
        db.execute("BEGIN")
        db.executemany("INSERT OR IGNORE INTO events (id, tenant, body) VALUES (?, ?, ?)", rows)
        db.execute("COMMIT")

    def _delivered(self, ids: list[str]) -> None:
        assert self._db is not None
        db = self._db
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("BEGIN")
        db.executemany("UPDATE events SET delivered = 1 WHERE id = ?", [(i,) for i in ids])
        db.execute("COMMIT")

    async def _run(self, func: Any, *args: Any) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, func, *args)

    async def open(self) -> None:
        await self._run(self._open)

    async def append(self, rows: list[tuple[str, str, bytes]]) -> None:
        await self._run(self._append, rows)

    async def delivered(self, ids: list[str]) -> None:
        await self._run(self._delivered, ids)

    def close(self) -> None:
        if self._db is not None:
            self._thread.submit(self._db.close).result()
        self._thread.shutdown()


async def serve(
    session: aiohttp.ClientSession,
    exchange: aio_pika.abc.AbstractExchange,
    journal: Journal,
    tenant: dict[str, Any],
    hold: float,
) -> None:
    name, api = tenant["name"], tenant["api_url"]
    headers = await fetch_token(session, tenant)
    async with session.post(api + "user/list", data={"Ver": "0"}, headers=headers) as resp:
        ver = int((await resp.json(content_type=None))["Ver"])
    timeout = aiohttp.ClientTimeout(total=hold + 10)
    routing_key = f"{name}.mail.new"
    while True:
        async with session.post(
            api + "listen", data={"Ver": str(ver)}, headers=headers, timeout=timeout
        ) as resp:
            body = await resp.read()
        if not body:
            continue
        doc = json.loads(body)
        rows: list[tuple[str, str, bytes]] = []
        for item in doc if isinstance(doc, list) else [doc]:
            if "MailId" in item:
                event_id, event = mail_event(name, item)
                rows.append((event_id, name, event))
            elif "Ver" in item:
                ver = int(item["Ver"])
            elif str(item.get("errcode", "0")) == "1200":
                headers = await fetch_token(session, tenant)
        if not rows:
            continue
        await journal.append(rows)  # durable before the next listen acknowledges them
        await asyncio.gather(
            *(
                exchange.publish(
                    aio_pika.Message(
                        event,
                        content_type="application/cloudevents+json",
                        message_id=event_id,
                        type="exmail.mail.new",
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=routing_key,
                    mandatory=True,
                )
                for event_id, _, event in rows
            )
        )
        await journal.delivered([event_id for event_id, _, _ in rows])


async def main(spec: dict[str, Any]) -> None:
    journal = Journal(Path(spec["journal"]))
    await journal.open()
    try:
        connection = await aio_pika.connect(spec["amqp_url"])
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(spec["exchange"])
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector) as session:
                await asyncio.gather(
                    *(serve(session, exchange, journal, t, spec["hold"]) for t in spec["tenants"])
                )
    finally:
        journal.close()


if __name__ == "__main__":
    # SIGTERM as a clean exit, so ``--profile`` (cProfile) writes this process's stats.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with open(sys.argv[1]) as handle:
        asyncio.run(main(json.load(handle)))
