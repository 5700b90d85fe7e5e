"""The operators' writes: replaying and dropping dead letters, retiring the deliveries of
sinks no longer configured, switching a sink off and on, pruning.

Where it sits: under the :class:`~relay.journal.Journal` facade, which queues these write
functions on the writer (:mod:`._writer`). They run in the running relay (a sink that
answers 410 is disabled; housekeeping prunes) and in the CLI's short-lived processes
(``deadletters replay``, ``endpoint enable|disable``), which open their own
:class:`~relay.journal.Journal` on the same file; the running relay's writer notices
those commits (``PRAGMA data_version``) and recounts.

Each function records what it changes on the batch's :class:`~._writer.Tx`; the writer
applies it with the commit.

Why orphans are retired to dead letters: a pending delivery of a sink the relay no
longer runs is never drained, yet its event stays in the backlog, so removing a dead
endpoint from the configuration could hold ``max_events`` for ever and pause every
tenant. Dead letters are outside the backlog by construction, and they come with the
tools an operator already has: listed, replayed (once the sink is back), dropped, and
pruned after ``dead_retention``.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Final

from relay.journal._filter import DeadFilter
from relay.journal._schema import DEAD, DELIVERED
from relay.journal._writer import Tx, Write

__all__ = [
    "PRUNE_DEAD",
    "PRUNE_DELIVERED",
    "drop_dead",
    "orphan_error",
    "prune",
    "replay",
    "retire_orphans",
    "set_disabled",
]

_CHUNK: Final = 500  # rows per set-wise statement, well under SQLite's variable limit


def orphan_error(sink: str) -> str:
    """The ``last_error`` of a delivery retired because its sink is not configured."""
    return f'sink "{sink}" is no longer configured'


def _with_marks(sql: str, count: int, tail: str = "") -> str:
    """``sql (?,?,...) tail``: ``count`` placeholders for bound values, nothing else."""
    return sql + " (" + ",".join("?" * count) + ") " + tail


def retire_orphans(*, now: float, configured: Collection[str]) -> Write[dict[str, int]]:
    """Turn every pending delivery of a sink not in ``configured`` into a dead letter
    (``last_error``: :func:`orphan_error`), and take its event out of the backlog when
    no other sink owes it, as a dead outcome of :meth:`Journal.settle` does. The write's
    result: how many deliveries, per orphaned sink (empty when there is none)."""
    keep = frozenset(configured)

    def write(tx: Tx) -> dict[str, int]:
        db = tx.db
        # The sinks with pending rows, one index seek each (not a scan of the backlog).
        sinks: list[str] = []
        # (A partial index is usable only with its literal ``state = 0``, not a parameter.)
        row = db.execute(
            "SELECT MIN(sink) FROM deliveries INDEXED BY deliveries_pending WHERE state = 0"
        ).fetchone()
        while row[0] is not None:
            sinks.append(str(row[0]))
            row = db.execute(
                "SELECT MIN(sink) FROM deliveries INDEXED BY deliveries_pending"
                " WHERE state = 0 AND sink > ?",
                (row[0],),
            ).fetchone()
        retired: dict[str, int] = {}
        for sink in sinks:
            if sink in keep:
                continue
            seqs = [
                int(seq)
                for (seq,) in db.execute(
                    "UPDATE deliveries INDEXED BY deliveries_pending SET state = ?, next_at = 0,"
                    " last_error = ?, updated = ? WHERE sink = ? AND state = 0 RETURNING seq",
                    (DEAD, orphan_error(sink), now, sink),
                ).fetchall()
            ]
            for start in range(0, len(seqs), _CHUNK):
                chunk = seqs[start : start + _CHUNK]
                for remaining, size in db.execute(
                    _with_marks(
                        "UPDATE events SET remaining = remaining - 1 WHERE seq IN",
                        len(chunk),
                        "RETURNING remaining, LENGTH(body)",
                    ),
                    chunk,
                ).fetchall():
                    if remaining == 0:
                        tx.backlog(-1, -int(size))
            retired[sink] = len(seqs)
        return retired

    return write


def drop_dead(*, where: DeadFilter) -> Write[tuple[int, int]]:
    """Delete the dead letters ``where`` matches, then the events they leave with no
    delivery at all. Dead rows are outside the backlog, so only the event total moves.
    The write's result: (dead letters, events) deleted."""
    clause, values = where.sql()

    def write(tx: Tx) -> tuple[int, int]:
        db = tx.db
        seqs = [
            int(seq)
            for (seq,) in db.execute(
                "DELETE FROM deliveries WHERE state = ? AND (sink, seq) IN"  # noqa: S608 - bound values
                " (SELECT d.sink, d.seq"
                " FROM deliveries d INDEXED BY deliveries_dead JOIN events e ON e.seq = d.seq"
                " WHERE d.state = 2" + clause + ") RETURNING seq",
                (DEAD, *values),
            ).fetchall()
        ]
        events = 0
        for start in range(0, len(set(seqs)), _CHUNK):
            chunk = sorted(set(seqs))[start : start + _CHUNK]
            events += int(
                db.execute(
                    _with_marks(
                        "DELETE FROM events WHERE seq IN",
                        len(chunk),
                        "AND NOT EXISTS (SELECT 1 FROM deliveries d INDEXED BY deliveries_seq"
                        " WHERE d.seq = events.seq)",
                    ),
                    chunk,
                ).rowcount
            )
        tx.stored(-events)
        return len(seqs), events

    return write


def replay(*, now: float, where: DeadFilter, include_delivered: bool) -> Write[int]:
    """Make the dead deliveries ``where`` matches (and, with ``include_delivered``,
    delivered ones) pending again, due at once with their attempts reset. The write's
    result: how many rows."""
    lowest_state = DELIVERED if include_delivered else DEAD
    clause, values = where.sql()

    def write(tx: Tx) -> int:
        db = tx.db
        rows = db.execute(
            "SELECT d.sink, d.seq FROM deliveries d JOIN events e"  # noqa: S608 - bound values
            " ON e.seq = d.seq WHERE d.state >= ?" + clause,
            (lowest_state, *values),
        ).fetchall()
        for row_sink, seq in rows:
            db.execute(
                "UPDATE deliveries SET state = 0, attempts = 0, next_at = 0, updated = ?"
                " WHERE sink = ? AND seq = ?",
                (now, row_sink, seq),
            )
            remaining, size = db.execute(
                "UPDATE events SET remaining = remaining + 1 WHERE seq = ?"
                " RETURNING remaining, LENGTH(body)",
                (seq,),
            ).fetchone()
            if remaining == 1:  # owed to nobody a moment ago: back in the backlog
                tx.backlog(1, int(size))
            tx.wake([row_sink])
        return len(rows)

    return write


def set_disabled(*, now: float, sink: str, disabled: bool, reason: str | None) -> Write[None]:
    """Switch ``sink`` off (its drainer stops sending) or on (and wake its drainer)."""

    def write(tx: Tx) -> None:
        tx.db.execute(
            "INSERT INTO sinks (name, disabled, reason, updated) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET disabled = excluded.disabled,"
            " reason = excluded.reason, updated = excluded.updated",
            (sink, int(disabled), reason, now),
        )
        if not disabled:
            tx.wake([sink])

    return write


# Delivered events past retention, except those with a dead letter (kept longer) ...
PRUNE_DELIVERED: Final = (
    "DELETE FROM events WHERE seq IN (SELECT seq FROM events"
    " WHERE remaining = 0 AND created < ? AND NOT EXISTS"
    " (SELECT 1 FROM deliveries d INDEXED BY deliveries_dead"
    " WHERE d.seq = events.seq AND d.state = 2) LIMIT ?)"
)
# ... and every finished event past the dead letters' retention.
PRUNE_DEAD: Final = (
    "DELETE FROM events WHERE seq IN (SELECT seq FROM events"
    " WHERE remaining = 0 AND created < ? LIMIT ?)"
)


def prune(sql: str, *, cutoff: float, chunk: int) -> Write[int]:
    """One chunk of a prune: delete up to ``chunk`` events created before ``cutoff``
    (their deliveries go by cascade). The write's result: how many."""

    def write(tx: Tx) -> int:
        deleted = int(tx.db.execute(sql, (cutoff, chunk)).rowcount)
        tx.stored(-deleted)
        return deleted

    return write
