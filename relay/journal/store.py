"""The journal: the relay's embedded durable store (SQLite, WAL mode).

Where it sits: the source appends events (and the tenant's new ``Ver``) here *before*
it sends the next ``listen``; every sink drains it on its own. What is committed here
is never lost, so the relay is at-least-once end to end.

Why it is shaped this way:

- **One thread owns the writing connection.** SQLite calls block, so every write runs
  on one dedicated worker thread; the event loop only awaits futures. One writer also
  means no locking questions inside the process. Reads (a drainer's claim, stats) run
  on a second, query-only connection in a thread of their own: in WAL mode they see
  every committed write and never wait behind a commit's fsync.
- **Group commit.** Writes (appends, delivery outcomes, checkpoints) are queued and the
  writer runs everything queued so far in one transaction: a burst costs a few fsyncs,
  not one per event. A batch holding only delivery outcomes (or prune deletes) commits
  without an fsync: a power cut may forget it, which costs a repeated delivery with the
  same id, never a lost event; the next append's fsync makes it durable anyway.
  ``synchronous=FULL`` (default) keeps appends through a power loss; ``NORMAL``
  survives ``kill -9`` but not a power cut.
- **Delivery rows per sink.** Each event gets one ``deliveries`` row per sink it is
  routed to, with state (pending, delivered, dead), attempt count, next attempt time and
  the last error. ``events.remaining`` counts the rows not yet final, so the backlog
  bound is tracked in memory without scanning.
- **Idempotent appends.** ``events.id`` is unique; appending an id twice stores it once.
- **Bounded.** Past ``max_events`` or ``max_bytes`` of undelivered events,
  :meth:`Journal.wait_capacity` blocks the source until sinks drain (backpressure, not
  loss). Delivered events stay for ``retention`` (replay), then are pruned.

Exceptions: :class:`JournalError` is the root; :class:`JournalClosed` means the journal
was used after :meth:`Journal.close`.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

from relay.core.delivery import Delivery, Settlement
from relay.core.events import Event

__all__ = [
    "DeadLetter",
    "Journal",
    "JournalClosed",
    "JournalError",
    "JournalStats",
    "SinkStats",
]

T = TypeVar("T")

PENDING: Final = 0
DELIVERED: Final = 1
DEAD: Final = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    type TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    body BLOB NOT NULL,
    created REAL NOT NULL,
    remaining INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_prune ON events (remaining, created);
CREATE TABLE IF NOT EXISTS deliveries (
    sink TEXT NOT NULL,
    seq INTEGER NOT NULL REFERENCES events (seq) ON DELETE CASCADE,
    state INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    updated REAL NOT NULL,
    PRIMARY KEY (sink, seq)
) WITHOUT ROWID;
-- Partial indexes keep the drainers' queries proportional to the backlog, not to the
-- delivered rows kept for retention: pending rows in order and by due time, dead
-- letters; and deliveries by seq, which the cascade from events (prune) needs so that
-- deleting an event does not scan the whole table.
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries (sink, seq) WHERE state = 0;
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (sink, next_at) WHERE state = 0;
CREATE INDEX IF NOT EXISTS deliveries_dead ON deliveries (seq) WHERE state = 2;
CREATE INDEX IF NOT EXISTS deliveries_seq ON deliveries (seq);
-- Schema 1 had one index on (sink, state, seq) that SQLite's planner passed over.
DROP INDEX IF EXISTS deliveries_state;
CREATE TABLE IF NOT EXISTS checkpoints (
    tenant TEXT PRIMARY KEY,
    ver INTEGER NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sinks (
    name TEXT PRIMARY KEY,
    disabled INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
SCHEMA_VERSION: Final = "2"


class JournalError(Exception):
    """The journal could not do what was asked (root of the journal's exceptions)."""


class JournalClosed(JournalError):
    """The journal was used after it was closed."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    sink: str
    seq: int
    event_id: str
    tenant: str
    type: str
    created: float
    attempts: int
    last_error: str | None
    updated: float


@dataclass(frozen=True, slots=True)
class SinkStats:
    pending: int
    oldest_pending_created: float | None
    dead: int
    disabled: bool
    disabled_reason: str | None


@dataclass(frozen=True, slots=True)
class JournalStats:
    events: int
    backlog_events: int
    backlog_bytes: int
    file_bytes: int
    sinks: dict[str, SinkStats] = field(default_factory=dict)


_CHUNK: Final = 500  # rows per set-wise statement, well under SQLite's variable limit
_STATES: Final = {"pending": PENDING, "delivered": DELIVERED, "dead": DEAD}

# A queued write: what to run in the transaction, who waits for it, whether it must be
# synced to disk before that waiter hears it is done (see Journal._write).
_Queued = tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any], bool]


def _with_marks(sql: str, count: int, tail: str = "") -> str:
    """``sql (?,?,...) tail``: ``count`` placeholders for bound values, nothing else."""
    return sql + " (" + ",".join("?" * count) + ") " + tail


class Journal:
    """The SQLite journal. Use as ``async with Journal(path, ...) as journal``."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_events: int = 1_000_000,
        max_bytes: int = 1 << 30,
        retention: float = 86400.0,
        dead_retention: float = 7 * 86400.0,
        synchronous: Literal["full", "normal"] = "full",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.retention = retention
        self.dead_retention = dead_retention
        self._synchronous = synchronous
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        self._db: sqlite3.Connection | None = None
        # Reads run on a second connection in a thread of their own (WAL lets them run
        # beside a commit): a drainer's claim never waits behind another commit's fsync.
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal-read")
        self._rdb: sqlite3.Connection | None = None
        self._queue: list[_Queued] = []
        self._queued = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closed = False
        self._capacity = asyncio.Condition()
        self._wakeups: dict[str, asyncio.Event] = {}
        self.backlog_events = 0
        self.backlog_bytes = 0
        self._events = 0  # rows in ``events``, counted once at open, then kept up to date
        self.commits = 0

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r}, backlog={self.backlog_events})"

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Journal:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def open(self) -> None:
        try:
            await self._run(self._open_sync)
            await asyncio.get_running_loop().run_in_executor(self._reader, self._open_reader)
        except (sqlite3.Error, OSError) as exc:
            with contextlib.suppress(sqlite3.Error):
                await self._run(self._close_sync)
            self._executor.shutdown(wait=False)
            self._reader.shutdown(wait=False)
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise JournalError(f"cannot open journal {self.path}: {reason}") from exc
        self._writer = asyncio.create_task(self._write_loop(), name="journal-writer")

    def _open_sync(self) -> None:
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self._synchronous.upper()}")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA busy_timeout=5000")
            db.executescript(_SCHEMA)
            db.execute(
                "INSERT INTO meta (key, value) VALUES ('schema', ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (SCHEMA_VERSION,),
            )
            row = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM events WHERE remaining > 0"
            ).fetchone()
            (events,) = db.execute("SELECT COUNT(*) FROM events").fetchone()
        except BaseException:
            db.close()
            raise
        self.backlog_events, self.backlog_bytes = int(row[0]), int(row[1])
        self._events = int(events)
        self._db = db

    def _open_reader(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        try:
            db.execute("PRAGMA query_only=ON")
            db.execute("PRAGMA busy_timeout=5000")
        except BaseException:
            db.close()
            raise
        self._rdb = db

    def _close_reader(self) -> None:
        if self._rdb is not None:
            self._rdb.close()
            self._rdb = None

    async def close(self) -> None:
        """Finish queued writes, then close. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._queued.set()
        if self._writer is not None:
            await self._writer
        with contextlib.suppress(sqlite3.Error):
            await asyncio.get_running_loop().run_in_executor(self._reader, self._close_reader)
        self._reader.shutdown(wait=True)
        with contextlib.suppress(sqlite3.Error):
            await self._run(self._close_sync)
        self._executor.shutdown(wait=True)
        async with self._capacity:
            self._capacity.notify_all()

    def _close_sync(self) -> None:
        if self._db is not None:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()
            self._db = None

    # -- plumbing ----------------------------------------------------------------------

    async def _run(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn)

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise JournalClosed("the journal is closed")
        return self._db

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise JournalClosed("the journal is closed")

        def read() -> T:
            if self._rdb is None:
                raise JournalClosed("the journal is closed")
            return fn(self._rdb)

        return await asyncio.get_running_loop().run_in_executor(self._reader, read)

    async def _write(self, fn: Callable[[sqlite3.Connection], T], *, durable: bool = True) -> T:
        """Queue ``fn`` for the next group commit and wait until it is committed.

        ``durable=False`` marks a write whose loss in a power cut costs nothing but a
        repeat (a delivery outcome: the event is sent again with the same id). A batch
        of only such writes commits without an fsync under ``synchronous=FULL``; the next
        durable commit syncs the WAL, and with it them. A process crash loses neither.
        """
        if self._closed:
            raise JournalClosed("the journal is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((fn, future, durable))
        self._queued.set()
        return await future

    async def _write_loop(self) -> None:
        while True:
            await self._queued.wait()
            self._queued.clear()
            batch, self._queue = self._queue, []
            if batch:
                await self._commit(batch)
            if self._closed and not self._queue:
                return

    async def _commit(self, batch: list[_Queued]) -> None:
        fns = [fn for fn, _, _ in batch]
        durable = any(flag for _, _, flag in batch)
        try:
            results = await self._run(lambda: self._transaction(fns, durable=durable))
        except Exception as exc:  # noqa: BLE001 -- handed to the waiting caller, not swallowed
            if len(batch) > 1:
                # Isolate the failing write: each one again in its own transaction.
                for item in batch:
                    await self._commit([item])
                return
            future = batch[0][1]
            if not future.done():
                if isinstance(exc, sqlite3.Error):
                    error: Exception = JournalError(f"journal write failed: {exc}")
                    error.__cause__ = exc
                else:
                    error = exc
                future.set_exception(error)
            return
        self.commits += 1
        for (_, future, _), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    def _transaction(
        self, fns: Sequence[Callable[[sqlite3.Connection], Any]], *, durable: bool
    ) -> list[Any]:
        db = self._conn()
        relaxed = not durable and self._synchronous == "full"
        if relaxed:
            db.execute("PRAGMA synchronous=NORMAL")
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                results = [fn(db) for fn in fns]
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            if relaxed:
                db.execute("PRAGMA synchronous=FULL")
        return results

    def wakeup(self, sink: str) -> asyncio.Event:
        """The event set whenever new work may be due for ``sink``."""
        event = self._wakeups.get(sink)
        if event is None:
            event = self._wakeups[sink] = asyncio.Event()
        return event

    def _wake(self, sinks: Iterable[str]) -> None:
        for sink in sinks:
            self.wakeup(sink).set()

    async def _adjust_backlog(self, events: int, size: int) -> None:
        self.backlog_events += events
        self.backlog_bytes += size
        if events < 0 or size < 0:
            async with self._capacity:
                self._capacity.notify_all()

    # -- the source's side -------------------------------------------------------------

    @property
    def full(self) -> bool:
        return self.backlog_events >= self.max_events or self.backlog_bytes >= self.max_bytes

    def backpressure_reason(self) -> str | None:
        if self.backlog_events >= self.max_events:
            return f"journal backlog {self.backlog_events} events >= max_events {self.max_events}"
        if self.backlog_bytes >= self.max_bytes:
            return f"journal backlog {self.backlog_bytes} bytes >= max_bytes {self.max_bytes}"
        return None

    async def wait_capacity(self) -> None:
        """Return once the backlog is under its bounds (or the journal closes)."""
        if not self.full:
            return
        async with self._capacity:
            await self._capacity.wait_for(lambda: not self.full or self._closed)
        if self._closed:
            raise JournalClosed("the journal is closed")

    async def append(
        self,
        tenant: str,
        events: Sequence[Event],
        *,
        route: Callable[[Event], Sequence[str]],
        checkpoint: int | None = None,
    ) -> int:
        """Store ``events`` (and the tenant's new Ver) in one durable transaction.

        ``route`` names the sinks each event goes to. Returns how many events were new;
        an id already stored is skipped, so a repeated happening is stored once.
        """
        now = self._clock()
        rows = [(event, event.encode(), tuple(route(event))) for event in events]

        def write(db: sqlite3.Connection) -> tuple[int, int, int, set[str]]:
            inserted = 0
            backlog = 0
            size = 0
            sinks_touched: set[str] = set()
            for event, body, sinks in rows:
                cursor = db.execute(
                    "INSERT OR IGNORE INTO events (id, tenant, type, routing_key, body, created,"
                    " remaining) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (event.id, tenant, event.type, event.routing_key, body, now, len(sinks)),
                )
                if cursor.rowcount != 1:
                    continue
                seq = cursor.lastrowid
                inserted += 1
                if sinks:
                    backlog += 1
                    size += len(body)
                    sinks_touched.update(sinks)
                    db.executemany(
                        "INSERT INTO deliveries (sink, seq, updated) VALUES (?, ?, ?)",
                        [(sink, seq, now) for sink in sinks],
                    )
            if checkpoint is not None:
                db.execute(
                    "INSERT INTO checkpoints (tenant, ver, updated) VALUES (?, ?, ?)"
                    " ON CONFLICT (tenant) DO UPDATE SET ver = excluded.ver,"
                    " updated = excluded.updated",
                    (tenant, checkpoint, now),
                )
            return inserted, backlog, size, sinks_touched

        inserted, backlog, size, touched = await self._write(write)
        self._events += inserted
        await self._adjust_backlog(backlog, size)
        self._wake(touched)
        return inserted

    async def checkpoint(self, tenant: str) -> int | None:
        def read(db: sqlite3.Connection) -> int | None:
            row = db.execute("SELECT ver FROM checkpoints WHERE tenant = ?", (tenant,)).fetchone()
            return None if row is None else int(row[0])

        return await self._read(read)

    async def checkpoints(self) -> dict[str, int]:
        def read(db: sqlite3.Connection) -> dict[str, int]:
            return {t: int(v) for t, v in db.execute("SELECT tenant, ver FROM checkpoints")}

        return await self._read(read)

    # -- the sinks' side ---------------------------------------------------------------

    async def claim(
        self,
        sink: str,
        *,
        limit: int,
        now: float | None = None,
        skip: Sequence[int] = (),
        due_only: bool = True,
    ) -> list[Delivery]:
        """Up to ``limit`` pending deliveries for ``sink``, oldest first.

        ``skip`` are sequence numbers in flight already. With ``due_only=False`` rows
        waiting for a retry are returned too (an ordered sink looks at its head).
        """
        moment = self._clock() if now is None else now
        skipped = tuple(set(skip))
        sql = (
            "SELECT d.seq, e.id, e.tenant, e.type, e.routing_key, e.body, e.created,"
            " d.attempts, d.next_at FROM deliveries d INDEXED BY deliveries_pending"
            " JOIN events e ON e.seq = d.seq WHERE d.sink = ? AND d.state = 0"
        )
        params: list[object] = [sink]
        if due_only:
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

        return await self._read(read)

    async def next_due(self, sink: str, *, after: float | None = None) -> float | None:
        """When the earliest pending delivery of ``sink`` is due (``None``: none pending).

        With ``after``, only rows due later than that count: a drainer that has claimed
        every row due at ``after`` asks when the next retry falls due, not about the
        rows it has in flight.
        """
        sql = (
            "SELECT MIN(next_at) FROM deliveries INDEXED BY deliveries_due"
            " WHERE sink = ? AND state = 0"
        )
        params: tuple[object, ...] = (sink,)
        if after is not None:
            sql += " AND next_at > ?"
            params = (sink, after)

        def read(db: sqlite3.Connection) -> float | None:
            row = db.execute(sql, params).fetchone()
            return None if row[0] is None else float(row[0])

        return await self._read(read)

    async def settle(self, sink: str, updates: Sequence[Settlement]) -> None:
        """Record delivery outcomes for ``sink`` (group-committed with other writes)."""
        if not updates:
            return
        now = self._clock()

        delivered = [u.seq for u in updates if u.state == "delivered" and u.attempted]
        others = [u for u in updates if not (u.state == "delivered" and u.attempted)]

        def write(db: sqlite3.Connection) -> tuple[int, int]:
            freed = 0
            freed_bytes = 0
            # The common case, successes, in a few set-wise statements instead of two
            # per row: the journal thread holds the GIL for less time per event.
            for start in range(0, len(delivered), _CHUNK):
                chunk = delivered[start : start + _CHUNK]
                moved = [
                    seq
                    for (seq,) in db.execute(
                        _with_marks(
                            "SELECT seq FROM deliveries WHERE sink = ? AND state = 0 AND seq IN",
                            len(chunk),
                        ),
                        (sink, *chunk),
                    )
                ]
                if not moved:
                    continue
                db.execute(
                    _with_marks(
                        "UPDATE deliveries SET state = 1, attempts = attempts + 1, next_at = 0,"
                        " updated = ? WHERE sink = ? AND seq IN",
                        len(moved),
                    ),
                    (now, sink, *moved),
                )
                for remaining, size in db.execute(
                    _with_marks(
                        "UPDATE events SET remaining = remaining - 1 WHERE seq IN",
                        len(moved),
                        "RETURNING remaining, LENGTH(body)",
                    ),
                    moved,
                ):
                    if remaining == 0:
                        freed += 1
                        freed_bytes += int(size)
            for update in others:
                state = _STATES[update.state]
                cursor = db.execute(
                    "UPDATE deliveries SET state = ?, attempts = attempts + ?, next_at = ?,"
                    " last_error = COALESCE(?, last_error), updated = ?"
                    " WHERE sink = ? AND seq = ? AND state = 0",
                    (
                        state,
                        1 if update.attempted else 0,
                        update.next_at,
                        update.error,
                        now,
                        sink,
                        update.seq,
                    ),
                )
                if cursor.rowcount == 1 and state != PENDING:
                    row = db.execute(
                        "UPDATE events SET remaining = remaining - 1 WHERE seq = ?"
                        " RETURNING remaining, LENGTH(body)",
                        (update.seq,),
                    ).fetchone()
                    if row is not None and row[0] == 0:
                        freed += 1
                        freed_bytes += int(row[1])
            return freed, freed_bytes

        freed, freed_bytes = await self._write(write, durable=False)
        if freed:
            await self._adjust_backlog(-freed, -freed_bytes)

    # -- dead letters, endpoints, replay ------------------------------------------------

    async def dead_letters(self, sink: str | None = None, *, limit: int = 1000) -> list[DeadLetter]:
        def read(db: sqlite3.Connection) -> list[DeadLetter]:
            sql = (
                "SELECT d.sink, d.seq, e.id, e.tenant, e.type, e.created, d.attempts,"
                " d.last_error, d.updated FROM deliveries d INDEXED BY deliveries_dead"
                " JOIN events e ON e.seq = d.seq"
                " WHERE d.state = 2 AND (? IS NULL OR d.sink = ?) ORDER BY d.seq LIMIT ?"
            )
            return [DeadLetter(*row) for row in db.execute(sql, (sink, sink, limit))]

        return await self._read(read)

    async def replay(
        self,
        *,
        sink: str | None = None,
        event_id: str | None = None,
        since: float | None = None,
        include_delivered: bool = False,
    ) -> int:
        """Queue dead letters (or, with ``include_delivered``, delivered events) again."""
        now = self._clock()
        lowest_state = DELIVERED if include_delivered else DEAD

        def write(db: sqlite3.Connection) -> tuple[int, int, int, set[str]]:
            rows = db.execute(
                "SELECT d.sink, d.seq FROM deliveries d JOIN events e ON e.seq = d.seq"
                " WHERE d.state >= ? AND (? IS NULL OR d.sink = ?) AND (? IS NULL OR e.id = ?)"
                " AND (? IS NULL OR e.created >= ?)",
                (lowest_state, sink, sink, event_id, event_id, since, since),
            ).fetchall()
            revived = 0
            revived_bytes = 0
            sinks: set[str] = set()
            for row_sink, seq in rows:
                db.execute(
                    "UPDATE deliveries SET state = 0, attempts = 0, next_at = 0, updated = ?"
                    " WHERE sink = ? AND seq = ?",
                    (now, row_sink, seq),
                )
                row = db.execute(
                    "UPDATE events SET remaining = remaining + 1 WHERE seq = ?"
                    " RETURNING remaining, LENGTH(body)",
                    (seq,),
                ).fetchone()
                if row[0] == 1:
                    revived += 1
                    revived_bytes += int(row[1])
                sinks.add(row_sink)
            return len(rows), revived, revived_bytes, sinks

        count, revived, revived_bytes, sinks = await self._write(write)
        await self._adjust_backlog(revived, revived_bytes)
        self._wake(sinks)
        return count

    async def set_disabled(self, sink: str, disabled: bool, reason: str | None = None) -> None:
        now = self._clock()

        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO sinks (name, disabled, reason, updated) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET disabled = excluded.disabled,"
                " reason = excluded.reason, updated = excluded.updated",
                (sink, int(disabled), reason, now),
            )

        await self._write(write)
        if not disabled:
            self._wake([sink])

    async def disabled(self, sink: str) -> str | None:
        """The reason ``sink`` is disabled, or ``None`` when it is enabled."""

        def read(db: sqlite3.Connection) -> str | None:
            row = db.execute(
                "SELECT disabled, reason FROM sinks WHERE name = ?", (sink,)
            ).fetchone()
            if row is None or not row[0]:
                return None
            return str(row[1] or "disabled")

        return await self._read(read)

    # -- housekeeping and statistics -----------------------------------------------------

    async def prune(self, *, chunk: int = 5000) -> int:
        """Delete fully delivered events past retention (and dead ones past theirs).

        Deletes ``chunk`` events per transaction, so appends and delivery records queue
        behind one short transaction at a time, not behind a day's worth of deletes.
        """
        now = self._clock()
        statements = (
            (
                "DELETE FROM events WHERE seq IN (SELECT seq FROM events"
                " WHERE remaining = 0 AND created < ? AND NOT EXISTS"
                " (SELECT 1 FROM deliveries d INDEXED BY deliveries_dead"
                " WHERE d.seq = events.seq AND d.state = 2) LIMIT ?)"
            ),
            (
                "DELETE FROM events WHERE seq IN (SELECT seq FROM events"
                " WHERE remaining = 0 AND created < ? LIMIT ?)"
            ),
        )

        def delete(sql: str, params: tuple[float, int]) -> Callable[[sqlite3.Connection], int]:
            return lambda db: int(db.execute(sql, params).rowcount)

        deleted = 0
        for sql, cutoff in zip(statements, (self.retention, self.dead_retention), strict=True):
            while True:
                count = await self._write(delete(sql, (now - cutoff, chunk)), durable=False)
                self._events -= count
                deleted += count
                if count < chunk:
                    break
        return deleted

    async def stats(self) -> JournalStats:
        """Counts for metrics and the status page. Costs grow with the backlog and the
        dead letters, not with the delivered events kept for retention."""

        def read(db: sqlite3.Connection) -> JournalStats:
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
            disabled = {
                name: (bool(flag), reason)
                for name, flag, reason in db.execute("SELECT name, disabled, reason FROM sinks")
            }
            sinks: dict[str, SinkStats] = {}
            for sink in set(pending) | set(dead) | set(disabled):
                oldest = None
                if pending.get(sink):
                    row = db.execute(
                        "SELECT e.created FROM deliveries d INDEXED BY deliveries_pending"
                        " JOIN events e ON e.seq = d.seq"
                        " WHERE d.sink = ? AND d.state = 0 ORDER BY d.seq LIMIT 1",
                        (sink,),
                    ).fetchone()
                    oldest = None if row is None else float(row[0])
                flag, reason = disabled.get(sink, (False, None))
                sinks[sink] = SinkStats(
                    pending=int(pending.get(sink, 0)),
                    oldest_pending_created=oldest,
                    dead=int(dead.get(sink, 0)),
                    disabled=flag,
                    disabled_reason=reason if flag else None,
                )
            (pages,) = db.execute("PRAGMA page_count").fetchone()
            (page_size,) = db.execute("PRAGMA page_size").fetchone()
            return JournalStats(
                events=self._events,
                backlog_events=self.backlog_events,
                backlog_bytes=self.backlog_bytes,
                file_bytes=int(pages) * int(page_size),
                sinks=sinks,
            )

        return await self._read(read)

    async def writable(self) -> bool:
        """A cheap write probe for readiness: a no-op transaction through the writer."""
        try:
            await self._write(lambda db: db.execute("SELECT 1").fetchone())
        except JournalError:
            return False
        return True
