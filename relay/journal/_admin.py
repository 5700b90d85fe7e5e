"""The operators' writes: replaying dead letters, switching a sink off and on, pruning.

Where it sits: under the :class:`~relay.journal.Journal` facade, which queues these write
functions on the writer (:mod:`._writer`). They run in the running relay (a sink that
answers 410 is disabled; housekeeping prunes) and in the CLI's short-lived processes
(``deadletters replay``, ``endpoint enable|disable``), which open their own
:class:`~relay.journal.Journal` on the same file; the running relay's writer notices
those commits (``PRAGMA data_version``) and recounts.

Each function records what it changes on the batch's :class:`~._writer.Tx`; the writer
applies it with the commit.
"""

from __future__ import annotations

from typing import Final

from relay.journal._schema import DEAD, DELIVERED
from relay.journal._writer import Tx, Write

__all__ = ["PRUNE_DEAD", "PRUNE_DELIVERED", "prune", "replay", "set_disabled"]


def replay(
    *,
    now: float,
    sink: str | None,
    event_id: str | None,
    since: float | None,
    include_delivered: bool,
) -> Write[int]:
    """Make dead deliveries (and, with ``include_delivered``, delivered ones) pending again,
    due at once with their attempts reset. The write's result: how many rows."""
    lowest_state = DELIVERED if include_delivered else DEAD

    def write(tx: Tx) -> int:
        db = tx.db
        rows = db.execute(
            "SELECT d.sink, d.seq FROM deliveries d JOIN events e ON e.seq = d.seq"
            " WHERE d.state >= ? AND (? IS NULL OR d.sink = ?) AND (? IS NULL OR e.id = ?)"
            " AND (? IS NULL OR e.created >= ?)",
            (lowest_state, sink, sink, event_id, event_id, since, since),
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
