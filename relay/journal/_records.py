"""What the journal hands out besides deliveries: dead letters and statistics.

Frozen, slotted dataclasses: they cross into the CLI, the status page and the metrics.
(:class:`~relay.core.delivery.Delivery` and :class:`~relay.core.delivery.Settlement`,
which the sinks speak too, live in the core.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DeadLetter", "JournalStats", "SinkStats"]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A delivery that gave up: what ``exmail-relay deadletters list`` shows."""

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
