"""The journal's reads: a query-only connection on a thread of its own, and the queries.

Where it sits: under the :class:`~relay.journal.Journal` facade. The drainers' claims and
retry times, the listeners' checkpoints, the stats and the dead letters are read here.

Why a second connection: in WAL mode a reader sees every committed write and never
waits behind a commit's fsync, so a drainer's claim does not queue behind another
batch's commit. Each query below is a factory: it builds its SQL on the event loop and
returns the function the reader's thread runs (the thread holds the GIL for less).

The queries are sized by the backlog, not by the history: each names the partial index
it reads (``INDEXED BY``), which covers only pending rows or only dead letters.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from relay.core.delivery import Delivery
from relay.journal._exceptions import JournalClosed, from_sqlite
from relay.journal._filter import DeadFilter
from relay.journal._records import DeadLetter, SinkStats
from relay.journal._schema import open_reader

__all__ = [
    "Read",
    "Reader",
    "checkpoint",
    "checkpoints",
    "claim",
    "dead_letters",
    "disabled",
    "next_due",
    "probe",
    "sink_stats",
]

T = TypeVar("T")

#: What the reader's thread runs: a function of the query-only connection.
Read = Callable[[sqlite3.Connection], T]


class Reader:
    """The query-only connection and its thread."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal-read")
        self._db: sqlite3.Connection | None = None

    async def open(self) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._open_sync)
        except BaseException:
            self._executor.shutdown(wait=False)
            raise

    def _open_sync(self) -> None:
        self._db = open_reader(self._path)

    async def close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                await asyncio.get_running_loop().run_in_executor(self._executor, self._close_sync)
        self._executor.shutdown(wait=True)

    def _close_sync(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            db.close()

    async def run(self, fn: Read[T]) -> T:
        """Run ``fn`` on the reader's thread. SQLite's errors leave as the journal's
        (a damaged page as :class:`~._exceptions.JournalCorrupt`)."""

        def read() -> T:
            if self._db is None:
                raise JournalClosed("the journal is closed")
            return fn(self._db)

        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, read)
        except sqlite3.Error as exc:
            raise from_sqlite(exc, path=self._path, doing="read") from exc


# -- the source's side ---------------------------------------------------------------


def checkpoint(tenant: str) -> Read[int | None]:
    def read(db: sqlite3.Connection) -> int | None:
        row = db.execute("SELECT ver FROM checkpoints WHERE tenant = ?", (tenant,)).fetchone()
        return None if row is None else int(row[0])

    return read


def directory_pending(tenant: str) -> Read[tuple[int, float] | None]:
    def read(db: sqlite3.Connection) -> tuple[int, float] | None:
        row = db.execute(
            "SELECT target, since FROM directory_pending WHERE tenant = ?", (tenant,)
        ).fetchone()
        return None if row is None else (int(row[0]), float(row[1]))

    return read


def checkpoints() -> Read[dict[str, int]]:
    def read(db: sqlite3.Connection) -> dict[str, int]:
        return {t: int(v) for t, v in db.execute("SELECT tenant, ver FROM checkpoints")}

    return read


# -- the sinks' side -----------------------------------------------------------------


def claim(
    sink: str,
    *,
    limit: int,
    moment: float,
    skip: Sequence[int],
    due_only: bool,
    horizon: float | None = None,
) -> Read[list[Delivery]]:
    """Up to ``limit`` pending deliveries of ``sink`` in order, not in ``skip``, and
    (``due_only``) due at ``moment``. With ``horizon``, a row stamped further than that
    ahead of ``moment`` is due too (:func:`relay.core.delivery.effective_due`)."""
    skipped = tuple(set(skip))
    sql = (
        "SELECT d.seq, e.id, e.tenant, e.type, e.routing_key, e.body, e.created,"
        " d.attempts, d.next_at, e.traceparent, e.tracestate"
        " FROM deliveries d INDEXED BY deliveries_pending"
        " JOIN events e ON e.seq = d.seq WHERE d.sink = ? AND d.state = 0"
    )
    params: list[object] = [sink]
    if due_only and horizon is not None:
        sql += " AND (d.next_at <= ? OR d.next_at > ?)"
        params.extend((moment, moment + horizon))
    elif due_only:
        sql += " AND d.next_at <= ?"
        params.append(moment)
    if skipped:
        # Only "?" placeholders are formatted in; the values are bound parameters.
        sql += f" AND d.seq NOT IN ({','.join('?' * len(skipped))})"
        params.extend(skipped)
    sql += " ORDER BY d.seq LIMIT ?"
    params.append(limit)

    def read(db: sqlite3.Connection) -> list[Delivery]:
        return [Delivery(sink, *row) for row in db.execute(sql, params)]

    return read


def next_due(sink: str, *, after: float | None) -> Read[float | None]:
    """The earliest ``next_at`` of ``sink``'s pending rows (later than ``after``)."""
    sql = (
        "SELECT MIN(next_at) FROM deliveries INDEXED BY deliveries_due WHERE sink = ? AND state = 0"
    )
    params: tuple[object, ...] = (sink,)
    if after is not None:
        sql += " AND next_at > ?"
        params = (sink, after)

    def read(db: sqlite3.Connection) -> float | None:
        row = db.execute(sql, params).fetchone()
        return None if row[0] is None else float(row[0])

    return read


def disabled(sink: str) -> Read[str | None]:
    def read(db: sqlite3.Connection) -> str | None:
        row = db.execute("SELECT disabled, reason FROM sinks WHERE name = ?", (sink,)).fetchone()
        if row is None or not row[0]:
            return None
        return str(row[1] or "disabled")

    return read


# -- operators and statistics ----------------------------------------------------------


def dead_letters(sink: str | None, *, limit: int) -> Read[list[DeadLetter]]:
    def read(db: sqlite3.Connection) -> list[DeadLetter]:
        sql = (
            "SELECT d.sink, d.seq, e.id, e.tenant, e.type, e.created, d.attempts,"
            " d.last_error, d.updated FROM deliveries d INDEXED BY deliveries_dead"
            " JOIN events e ON e.seq = d.seq"
            " WHERE d.state = 2 AND (? IS NULL OR d.sink = ?) ORDER BY d.seq LIMIT ?"
        )
        return [DeadLetter(*row) for row in db.execute(sql, (sink, sink, limit))]

    return read


def dead_page(
    where: DeadFilter, *, after: tuple[int, str] | None, limit: int
) -> Read[list[DeadLetter]]:
    """Up to ``limit`` dead letters matching ``where``, in (seq, sink) order, after the
    cursor ``after`` (the last (seq, sink) of the previous page)."""
    seq, sink = after if after is not None else (-1, "")
    clause, values = where.sql()

    def read(db: sqlite3.Connection) -> list[DeadLetter]:
        sql = (
            "SELECT d.sink, d.seq, e.id, e.tenant, e.type, e.created,"  # noqa: S608 - bound values
            " d.attempts, d.last_error, d.updated FROM deliveries d INDEXED BY deliveries_dead"
            " JOIN events e ON e.seq = d.seq WHERE d.state = 2"
            " AND (d.seq > ? OR (d.seq = ? AND d.sink > ?))"
            + clause
            + " ORDER BY d.seq, d.sink LIMIT ?"
        )
        return [DeadLetter(*row) for row in db.execute(sql, (seq, seq, sink, *values, limit))]

    return read


def sink_stats(db: sqlite3.Connection) -> tuple[dict[str, SinkStats], int]:
    """Per-sink pending, oldest pending, dead and disabled; and the file's size."""
    pending = dict(
        db.execute(
            "SELECT sink, COUNT(*) FROM deliveries INDEXED BY deliveries_pending"
            " WHERE state = 0 GROUP BY sink"
        ).fetchall()
    )
    dead = dict(
        db.execute(
            "SELECT sink, COUNT(*) FROM deliveries INDEXED BY deliveries_dead"
            " WHERE state = 2 GROUP BY sink"
        ).fetchall()
    )
    flags = {
        name: (bool(flag), reason)
        for name, flag, reason in db.execute("SELECT name, disabled, reason FROM sinks")
    }
    sinks: dict[str, SinkStats] = {}
    for sink in set(pending) | set(dead) | set(flags):
        oldest = None
        if pending.get(sink):
            row = db.execute(
                "SELECT e.created FROM deliveries d INDEXED BY deliveries_pending"
                " JOIN events e ON e.seq = d.seq"
                " WHERE d.sink = ? AND d.state = 0 ORDER BY d.seq LIMIT 1",
                (sink,),
            ).fetchone()
            oldest = None if row is None else float(row[0])
        flag, reason = flags.get(sink, (False, None))
        sinks[sink] = SinkStats(
            pending=int(pending.get(sink, 0)),
            oldest_pending_created=oldest,
            dead=int(dead.get(sink, 0)),
            disabled=flag,
            disabled_reason=reason if flag else None,
        )
    (pages,) = db.execute("PRAGMA page_count").fetchone()
    (page_size,) = db.execute("PRAGMA page_size").fetchone()
    return sinks, int(pages) * int(page_size)


def probe(db: sqlite3.Connection) -> None:
    """Read what a running relay reads first (every checkpoint, the sinks, the pending
    and dead indexes): at open, so that a damaged page there stops the start. Sized by
    the tenants and the backlog, like the stats every few seconds; not a
    ``PRAGMA quick_check``, which reads the whole file (``exmail-relay journal check``)."""
    checkpoints()(db)
    sink_stats(db)
