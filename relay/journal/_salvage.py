"""Checking a journal file and salvaging what is readable of a damaged one.

Where it sits: beside the :class:`~relay.journal.Journal` facade, not under it. The
``exmail-relay journal check`` and ``journal salvage`` commands call these functions on a
stopped relay's file (the admin API runs ``check`` in the relay). Plain synchronous
SQLite: the commands are short-lived and do nothing else meanwhile.

Why it is shaped this way:

- **The damaged file is only read.** It is opened read-only (``mode=ro``), so a salvage
  can be repeated, and the original stays for a second opinion.
- **Not beside a running relay.** ``check`` only reads, so it may run anytime.
  ``salvage`` holds the journal's lock (:mod:`._lock`) while it copies, so it refuses a
  file a relay still writes (what the relay wrote after the copy would be lost at the
  swap), and a relay cannot start on the file meanwhile.
- **One bad page costs only its rows.** A damaged b-tree page fails every query whose
  path crosses it, and a query that fails mid-way gives nothing. So the tables are read
  by ranges of their keys (``rowid``, or ``(sink, seq)`` for ``deliveries``), and a range
  that fails is halved until the failing single keys are known: those rows are lost,
  every other one is copied.
- **The new file is a journal like any other.** It is created by the normal schema code
  (:func:`~._schema.open_writer`) under a temporary name, filled in one transaction,
  switched out of WAL mode (one self-contained file) and only then renamed to the name
  asked for. ``events.remaining`` is recomputed from the deliveries copied, so the new
  file's backlog is exactly what its pending rows say.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from relay.journal._exceptions import JournalError
from relay.journal._lock import JournalLock
from relay.journal._schema import PENDING, open_writer

__all__ = ["Check", "Copied", "Salvage", "check_file", "salvage_file"]

_STOP_FIRST: Final = (
    "stop it first: a salvage copies the file while nothing writes it"
    " (docs/operations.md, Journal corruption)"
)
_CHUNK: Final = 512  # keys per range read; a failing range is halved down to one key

Row = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Check:
    """What ``journal check`` found: ``problems`` is empty when the file is sound."""

    problems: tuple[str, ...]
    # sink -> (pending, dead); None when the deliveries could not be read.
    sinks: dict[str, tuple[int, int]] | None
    sinks_error: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


_SINK_COUNTS: Final = (
    "SELECT sink, state, COUNT(*) FROM deliveries NOT INDEXED"
    " WHERE state != 1 GROUP BY sink, state",
    "SELECT sink, state, COUNT(*) FROM deliveries INDEXED BY deliveries_pending"
    " WHERE state = 0 GROUP BY sink UNION ALL"
    " SELECT sink, state, COUNT(*) FROM deliveries INDEXED BY deliveries_dead"
    " WHERE state = 2 GROUP BY sink",
)


def _open_readonly(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, isolation_level=None)
    db.execute("PRAGMA query_only=ON")
    return db


def check_file(path: Path) -> Check:
    """``PRAGMA integrity_check`` on ``path``, and pending/dead deliveries per sink."""
    with contextlib.closing(_open_readonly(path)) as db:
        try:
            rows = db.execute("PRAGMA integrity_check").fetchall()
            problems = tuple(
                line for (text,) in rows for line in str(text).splitlines() if text != "ok"
            )
        except sqlite3.DatabaseError as exc:  # the check itself cannot walk the file
            problems = (str(exc),)
        sinks: dict[str, tuple[int, int]] | None = None
        error = None
        for sql in _SINK_COUNTS:  # the table itself, else the partial indexes
            try:
                counts = db.execute(sql).fetchall()
            except sqlite3.DatabaseError as exc:
                error = error or str(exc)
                continue
            sinks = {}
            for sink, state, count in counts:
                pending, dead = sinks.get(str(sink), (0, 0))
                sinks[str(sink)] = (int(count), dead) if state == PENDING else (pending, int(count))
            break
    return Check(problems, sinks, None if sinks is not None else error)


# -- salvage ----------------------------------------------------------------------------


@dataclass(slots=True)
class Copied:
    """One table's outcome: rows copied, rows known lost (``None``: unknown)."""

    copied: int = 0
    lost: int | None = 0


@dataclass(slots=True)
class Salvage:
    """What ``journal salvage`` did."""

    source: Path
    target: Path
    events: Copied = field(default_factory=Copied)
    deliveries: Copied = field(default_factory=Copied)
    checkpoints: Copied = field(default_factory=Copied)
    sinks: Copied = field(default_factory=Copied)
    # Deliveries read whose event was lost (not copied: nothing to deliver).
    orphans: int = 0
    # Events copied with no delivery row: routed to no sink, or their rows were lost
    # (then they count as delivered in the new file and are not sent again).
    unrouted: int = 0
    # The new file: events some sink still owes, and pending deliveries per sink.
    backlog: int = 0
    pending: dict[str, int] = field(default_factory=dict)


def _rows(db: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> list[Row] | None:
    try:
        return db.execute(sql, params).fetchall()
    except sqlite3.DatabaseError:
        return None


def _one(db: sqlite3.Connection, sql: str, params: tuple[Any, ...] = ()) -> Any:
    rows = _rows(db, sql, params)
    return None if not rows else rows[0][0]


def _ranges(
    db: sqlite3.Connection, sql: str, prefix: tuple[Any, ...], low: int, high: int
) -> Iterator[tuple[list[Row], int]]:
    """``sql`` (its last two parameters a key range) over ``low..high``, a chunk at a
    time; a chunk that fails is halved until single keys fail. Yields (rows, keys lost
    to failing reads).

    ``sql`` ends with its ``ORDER BY``. A single key is read with ``=`` (a range scan
    past the last row of a page steps onto the next page to see where the range ends,
    and fails if that one is damaged), then backwards: a key kept in a parent page (the
    ``deliveries`` b-tree keeps rows there) is found by a backward seek without stepping
    into the damaged child beside it."""
    single = sql.replace("BETWEEN ? AND ?", "= ?")
    backward = sql + " DESC LIMIT 1"
    for start in range(low, high + 1, _CHUNK):
        pending = [(start, min(high, start + _CHUNK - 1))]
        while pending:
            a, b = pending.pop()
            if a < b:
                rows = _rows(db, sql, (*prefix, a, b))
            else:
                rows = _rows(db, single, (*prefix, a))
                rows = _rows(db, backward, (*prefix, a, a)) if rows is None else rows
            if rows is not None:
                yield rows, 0
            elif a == b:
                yield [], 1
            else:
                middle = (a + b) // 2
                pending += [(middle + 1, b), (a, middle)]  # popped low half first


def _rowid_bounds(db: sqlite3.Connection, table: str, *more: int | None) -> tuple[int, int] | None:
    known = [
        int(v)
        for v in (
            _one(db, f"SELECT MIN(rowid) FROM {table}"),  # noqa: S608 -- our own names
            _one(db, f"SELECT MAX(rowid) FROM {table}"),  # noqa: S608 -- our own names
            *more,
        )
        if v is not None
    ]
    return (min(known), max(known)) if known else None


def _copy_rowid_table(
    src: sqlite3.Connection,
    out: sqlite3.Connection,
    *,
    table: str,
    columns: str,
    insert: str,
    bounds: tuple[int, int] | None,
    expected: int | None,
) -> Copied:
    result = Copied()
    if bounds is not None:
        select = (
            f"SELECT {columns} FROM {table}"  # noqa: S608 -- our own names
            " WHERE rowid BETWEEN ? AND ? ORDER BY rowid"
        )
        for rows, _ in _ranges(src, select, (), *bounds):
            for row in rows:
                result.copied += out.execute(insert, row).rowcount
    result.lost = None if expected is None else max(0, expected - result.copied)
    return result


def _sink_names(src: sqlite3.Connection, out: sqlite3.Connection) -> set[str]:
    """Every sink name to be found: the sinks table (copied already), the partial
    indexes, and a walk over the deliveries' key from both ends."""
    names = {str(n) for (n,) in out.execute("SELECT name FROM sinks")}
    for sql in (
        "SELECT DISTINCT sink FROM deliveries INDEXED BY deliveries_pending WHERE state = 0",
        "SELECT DISTINCT sink FROM deliveries INDEXED BY deliveries_due WHERE state = 0",
        "SELECT DISTINCT sink FROM deliveries INDEXED BY deliveries_dead WHERE state = 2",
    ):
        names.update(str(n) for (n,) in _rows(src, sql, ()) or [])
    for step in (
        "SELECT MIN(sink) FROM deliveries WHERE sink > ?",
        "SELECT MAX(sink) FROM deliveries WHERE sink < ?",
    ):
        last = "" if "MIN" in step else "\U0010ffff"
        while (name := _one(src, step, (last,))) is not None:
            names.add(str(name))
            last = str(name)
    return names


def salvage_file(source: Path, target: Path) -> Salvage:
    """Copy every readable event, delivery, checkpoint and sink flag of ``source`` into
    a new journal at ``target`` (which must not exist). See the module docstring."""
    if not source.is_file():
        raise JournalError(f"journal {source} does not exist")
    if target.resolve() == source.resolve():
        raise JournalError(f"salvage into {target}: that is the damaged journal itself")
    for path in (target, Path(f"{target}-wal")):
        if path.exists():
            raise JournalError(f"salvage into {target}: {path} exists (refusing to overwrite)")
    with JournalLock(source, command="journal salvage", advice=_STOP_FIRST):
        return _salvage_locked(source, target)


def _salvage_locked(source: Path, target: Path) -> Salvage:
    partial = target.with_name(target.name + ".salvage-partial")
    for leftover in (partial, Path(f"{partial}-wal"), Path(f"{partial}-shm")):
        leftover.unlink(missing_ok=True)  # a salvage that died earlier: ours, by its name
    report = Salvage(source, target)
    try:
        with (
            contextlib.closing(_open_readonly(source)) as src,
            contextlib.closing(open_writer(partial, synchronous="full")) as out,
        ):
            out.execute("BEGIN IMMEDIATE")
            _readable(src, source)
            _copy(src, out, report)
            out.execute("COMMIT")
            out.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        os.replace(partial, target)
    except sqlite3.Error as exc:
        raise JournalError(f"salvage of {source} into {target} failed: {exc}") from exc
    except OSError as exc:
        raise JournalError(f"salvage into {target} failed: {exc.strerror or exc}") from exc
    finally:
        for leftover in (partial, Path(f"{partial}-wal"), Path(f"{partial}-shm")):
            leftover.unlink(missing_ok=True)
    return report


def _readable(src: sqlite3.Connection, source: Path) -> None:
    """Refuse a file whose schema cannot be read: there is nothing to copy from it."""
    try:
        names = {str(n) for (n,) in src.execute("SELECT name FROM sqlite_master")}
    except sqlite3.DatabaseError as exc:
        raise JournalError(f"nothing to salvage in {source}: {exc}") from exc
    if "events" not in names:
        raise JournalError(f"nothing to salvage in {source}: it holds no journal tables")


def _copy(src: sqlite3.Connection, out: sqlite3.Connection, report: Salvage) -> None:
    last_seq = _one(src, "SELECT seq FROM sqlite_sequence WHERE name = 'events'")
    seq_low = _one(src, "SELECT MIN(seq) FROM deliveries INDEXED BY deliveries_seq")
    seq_high = _one(src, "SELECT MAX(seq) FROM deliveries INDEXED BY deliveries_seq")
    event_bounds = _rowid_bounds(src, "events", seq_low, seq_high)
    report.events = _copy_rowid_table(
        src,
        out,
        table="events",
        columns="seq, id, tenant, type, routing_key, body, created",
        insert="INSERT OR IGNORE INTO events (seq, id, tenant, type, routing_key, body, created,"
        " remaining) VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
        bounds=event_bounds,
        expected=_one(src, "SELECT COUNT(*) FROM events"),
    )
    report.checkpoints = _copy_rowid_table(
        src,
        out,
        table="checkpoints",
        columns="tenant, ver, updated",
        insert="INSERT OR IGNORE INTO checkpoints (tenant, ver, updated) VALUES (?, ?, ?)",
        bounds=_rowid_bounds(src, "checkpoints"),
        expected=_one(
            src, "SELECT COUNT(*) FROM checkpoints INDEXED BY sqlite_autoindex_checkpoints_1"
        ),
    )
    report.sinks = _copy_rowid_table(
        src,
        out,
        table="sinks",
        columns="name, disabled, reason, updated",
        insert="INSERT OR IGNORE INTO sinks (name, disabled, reason, updated) VALUES (?, ?, ?, ?)",
        bounds=_rowid_bounds(src, "sinks"),
        expected=_one(src, "SELECT COUNT(*) FROM sinks INDEXED BY sqlite_autoindex_sinks_1"),
    )
    _copy_deliveries(src, out, report, event_bounds)
    # The counters: each event owes what its copied pending deliveries say.
    out.execute(
        "UPDATE events SET remaining = (SELECT COUNT(*) FROM deliveries d"
        " WHERE d.seq = events.seq AND d.state = ?)",
        (PENDING,),
    )
    if last_seq is not None:  # keep seq growing past the damaged file's last one
        out.execute(
            "UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = 'events'", (int(last_seq),)
        )
    (report.unrouted,) = out.execute(
        "SELECT COUNT(*) FROM events e WHERE NOT EXISTS"
        " (SELECT 1 FROM deliveries d INDEXED BY deliveries_seq WHERE d.seq = e.seq)"
    ).fetchone()
    (report.backlog,) = out.execute("SELECT COUNT(*) FROM events WHERE remaining > 0").fetchone()
    report.pending = {
        str(sink): int(count)
        for sink, count in out.execute(
            "SELECT sink, COUNT(*) FROM deliveries WHERE state = ? GROUP BY sink", (PENDING,)
        )
    }


def _copy_deliveries(
    src: sqlite3.Connection,
    out: sqlite3.Connection,
    report: Salvage,
    bounds: tuple[int, int] | None,
) -> None:
    expected = _one(src, "SELECT COUNT(*) FROM deliveries INDEXED BY deliveries_seq")
    result = Copied()
    if bounds is not None:
        select = (
            "SELECT sink, seq, state, attempts, next_at, last_error, updated FROM deliveries"
            " WHERE sink = ? AND seq BETWEEN ? AND ? ORDER BY seq"
        )
        insert = (
            "INSERT OR IGNORE INTO deliveries (sink, seq, state, attempts, next_at, last_error,"
            " updated) SELECT ?, ?, ?, ?, ?, ?, ? WHERE EXISTS"
            " (SELECT 1 FROM events WHERE seq = ?)"
        )
        for sink in sorted(_sink_names(src, out)):
            for rows, _ in _ranges(src, select, (sink,), *bounds):
                for row in rows:
                    if out.execute(insert, (*row, row[1])).rowcount:
                        result.copied += 1
                    else:
                        report.orphans += 1
    read = result.copied + report.orphans
    result.lost = None if expected is None else max(0, int(expected) - read)
    report.deliveries = result
