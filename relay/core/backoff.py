"""Retry arithmetic: backoff for the listeners and the sinks, schedules for webhooks.

Pure functions, no I/O and no clock: the caller passes ``now`` and the random source,
so every decision here is exhaustively testable.

- :class:`Backoff` is capped exponential backoff with full jitter (AWS architecture
  blog, "Exponential Backoff And Jitter"): the delay before attempt ``n`` is uniform in
  ``[0, min(cap, base * 2**n)]``. Full jitter spreads a fleet of reconnecting
  listeners instead of synchronising them. It is the client's own policy
  (:mod:`relay.exmail`), re-exported here so the whole relay shares one.
- :func:`schedule_delay` is a fixed schedule with proportional jitter, the Standard
  Webhooks way: after attempt ``n`` wait ``schedule[n-1] * (1 +- jitter)``.
- :func:`parse_retry_after` reads an HTTP ``Retry-After`` (seconds or an HTTP date).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from relay.exmail import Backoff

__all__ = ["Backoff", "parse_retry_after", "schedule_delay"]

Random = Callable[[], float]


def schedule_delay(
    schedule: Sequence[float], attempts: int, *, jitter: float, rand: Random = random.random
) -> float | None:
    """Delay after ``attempts`` failed attempts, or ``None`` when the schedule is spent.

    ``jitter`` is a fraction: 0.2 gives a delay uniform in ``[0.8 d, 1.2 d]``.
    """
    if attempts < 1 or attempts > len(schedule):
        return None
    base = schedule[attempts - 1]
    return base * (1.0 + jitter * (2.0 * rand() - 1.0))


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header, or ``None`` if absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now if now is not None else datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())
