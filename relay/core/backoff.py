"""Retry arithmetic: backoff for the listeners and the sinks, schedules for webhooks.

Pure functions, no I/O and no clock: the caller passes ``now`` and the random source,
so every decision here is exhaustively testable.

- :class:`Backoff` is capped exponential backoff with full jitter (AWS architecture
  blog, "Exponential Backoff And Jitter"): the delay before attempt ``n`` is uniform in
  ``[0, min(cap, base * 2**n)]``. Full jitter spreads a fleet of reconnecting
  listeners instead of synchronising them. The Exmail client (:mod:`relay.exmail`)
  uses the same policy for its retried reads, so the whole relay shares one.
- :func:`schedule_delay` is a fixed schedule with proportional jitter, the Standard
  Webhooks way: after attempt ``n`` wait ``schedule[n-1] * (1 +- jitter)``.
- :func:`parse_retry_after` reads an HTTP ``Retry-After`` (seconds or an HTTP date).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = ["Backoff", "parse_retry_after", "schedule_delay"]

Random = Callable[[], float]
_DELTA_SECONDS = re.compile(r"[0-9]{1,10}")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential backoff with full jitter; ``attempt`` counts from 0."""

    base: float = 0.2
    cap: float = 5.0

    def __post_init__(self) -> None:
        if self.base < 0 or self.cap < 0:
            raise ValueError("base and cap must not be negative")

    def ceiling(self, attempt: int) -> float:
        """The upper bound of the delay before retry number ``attempt`` (0-based)."""
        if attempt < 0:
            raise ValueError("attempt must not be negative")
        # Cap the exponent first so large attempts cannot overflow a float.
        return min(self.cap, self.base * 2.0 ** min(attempt, 64))

    def delay(self, attempt: int, fraction: float | None = None) -> float:
        """Seconds to wait; ``fraction`` in [0, 1] (drawn at random when omitted)."""
        if fraction is None:
            fraction = random.random()
        if not 0.0 <= fraction <= 1.0:
            raise ValueError("fraction must be within [0, 1]")
        return fraction * self.ceiling(attempt)


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
    """Seconds to wait from a ``Retry-After`` header, or ``None`` if absent or unreadable.

    Strict, as RFC 9110 writes it: delta-seconds are ASCII digits only (``str.isdigit``
    also accepts ``²`` and other Unicode digits, which ``float`` then refuses), and an
    HTTP date is ASCII. Anything else is unreadable, and the caller falls back to its
    schedule.
    """
    if value is None:
        return None
    text = value.strip(" \t")  # HTTP's optional white space, nothing wider
    if not text or not text.isascii():
        return None
    if _DELTA_SECONDS.fullmatch(text):
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now if now is not None else datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())
