"""The journal's tables, the schema version and its migrations, opening connections.

Where it sits: below the writer (:mod:`._writer`) and the reader (:mod:`._reads`), which
each open their connection here; nothing in this module runs a caller's query.

Migrations happen in place at open, by the writer: the DDL below is idempotent
(``IF NOT EXISTS``, ``IF EXISTS``), so running it on a file of any older version brings
it to this one, and ``meta.schema`` is then set to :data:`SCHEMA_VERSION`.

- 1 -> 2: the deliveries' single (sink, state, seq) index, which SQLite's planner passed
  over, is replaced by partial indexes (pending, due, dead) and one on seq.
- 2 -> 3: a partial index on the events still owed to some sink (``events_backlog``), so
  recounting the backlog (at open, and when another connection committed) reads the
  backlog, not the delivered events kept for retention.
- 3 -> 4: the events' trace context (``traceparent``, ``tracestate``: W3C, ``NULL``
  when not traced, as in every older row), added by :func:`_add_trace_columns`
  (``ALTER TABLE`` has no ``IF NOT EXISTS``). Docs: docs/operations.md, "Tracing".
- 4 -> 5: the second API's last directory listing per tenant (``directory_listings``,
  ``directory_members``: :mod:`._listing`); an older file starts without one (a baseline).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Final, Literal

__all__ = [
    "DEAD",
    "DELIVERED",
    "PENDING",
    "SCHEMA_VERSION",
    "STATES",
    "open_reader",
    "open_writer",
]

# deliveries.state
PENDING: Final = 0
DELIVERED: Final = 1
DEAD: Final = 2
STATES: Final = {"pending": PENDING, "delivered": DELIVERED, "dead": DEAD}

SCHEMA_VERSION: Final = "5"

_TRACE_COLUMNS: Final = ("traceparent", "tracestate")

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    type TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    body BLOB NOT NULL,
    created REAL NOT NULL,
    remaining INTEGER NOT NULL,
    traceparent TEXT,
    tracestate TEXT
);
CREATE INDEX IF NOT EXISTS events_prune ON events (remaining, created);
-- Schema 3: the events some sink still owes (the backlog), for recounting it.
CREATE INDEX IF NOT EXISTS events_backlog ON events (seq) WHERE remaining > 0;
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
-- A directory change announced by listen and not yet expanded (user/list, user/get):
-- the newest announced Ver, kept until the checkpoint reaches it. A journal without
-- the table (or a salvaged one) loses nothing: listen from the checkpoint announces
-- the change again.
CREATE TABLE IF NOT EXISTS directory_pending (
    tenant TEXT PRIMARY KEY,
    target INTEGER NOT NULL,
    since REAL NOT NULL
);
-- Schema 5: the last whole directory listing of a tenant on the second API (no change
-- feed: relay.core.listing), changed in the transaction of the events it produced. A
-- journal without it (older, salvaged) starts from a baseline.
CREATE TABLE IF NOT EXISTS directory_listings (
    tenant TEXT PRIMARY KEY,
    members INTEGER NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS directory_members (
    tenant TEXT NOT NULL,
    member TEXT NOT NULL,
    alias TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (tenant, member)
) WITHOUT ROWID;
"""


def open_writer(path: Path, *, synchronous: Literal["full", "normal"]) -> sqlite3.Connection:
    """The writing connection, with the schema brought to :data:`SCHEMA_VERSION`.

    Creates the file (and its directory) if needed. Call it on the writer's thread: the
    connection may only be used on the thread that opened it.
    """
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("PRAGMA busy_timeout=5000")
        db.executescript(_SCHEMA)
        _add_trace_columns(db)
        db.execute(
            "INSERT INTO meta (key, value) VALUES ('schema', ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (SCHEMA_VERSION,),
        )
    except BaseException:
        db.close()
        raise
    return db


def _add_trace_columns(db: sqlite3.Connection) -> None:
    """Schema 4's trace columns on a file of an older version (a new file has them)."""
    db.execute("BEGIN IMMEDIATE")  # another process opening the same file waits here
    try:
        have = {row[1] for row in db.execute("PRAGMA table_info(events)")}
        for column in _TRACE_COLUMNS:
            if column not in have:
                # Only names from _TRACE_COLUMNS are formatted in.
                db.execute(f"ALTER TABLE events ADD COLUMN {column} TEXT")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def open_reader(path: Path) -> sqlite3.Connection:
    """A query-only connection (open the writer first: it creates and migrates the file)."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
    try:
        db.execute("PRAGMA query_only=ON")
        db.execute("PRAGMA busy_timeout=5000")
    except BaseException:
        db.close()
        raise
    return db
