"""Which dead letters an operator means: the filter of the admin API and the CLI.

Where it sits: :class:`DeadFilter` travels from ``/admin/v1/deadletters`` (and the
``deadletters`` command) into the journal's read (:func:`._reads.dead_page`) and writes
(:func:`._admin.replay`, :func:`._admin.drop_where`), which all select with the same SQL
fragment (:meth:`DeadFilter.sql`), so a list shows exactly what a replay or a drop with
the same filter touches. Every value is a bound parameter, never SQL text.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DeadFilter"]


@dataclass(frozen=True, slots=True)
class DeadFilter:
    """Every field is optional; unset fields match everything. ``since``/``until`` bound
    the event's creation time (Unix seconds): ``since <= created < until``."""

    sink: str | None = None
    tenant: str | None = None
    type: str | None = None
    event_id: str | None = None
    since: float | None = None
    until: float | None = None

    def sql(self) -> tuple[str, tuple[object, ...]]:
        """`` AND ...`` over ``d`` (deliveries) joined with ``e`` (events), and its values."""
        text = (
            " AND (? IS NULL OR d.sink = ?) AND (? IS NULL OR e.tenant = ?)"
            " AND (? IS NULL OR e.type = ?) AND (? IS NULL OR e.id = ?)"
            " AND (? IS NULL OR e.created >= ?) AND (? IS NULL OR e.created < ?)"
        )
        values: list[object] = []
        for value in (self.sink, self.tenant, self.type, self.event_id, self.since, self.until):
            values += [value, value]
        return text, tuple(values)
