"""Log throttling: say a repeated trouble once, then at most every ``every`` seconds.

Where it sits: every loop that retries something (a broker link reconnecting, a listener
backing off, a journal refusing writes, broker messages refused) logs its trouble through
a :class:`LogThrottle`, so a fault that lasts an hour writes a line a minute, not one per
attempt, and the line says how many were left out. Pure: the caller passes the clock
reading (monotonic seconds), so the decision is testable without time passing.

Usage::

    throttle = LogThrottle(every=30.0)
    ...
    if (suppressed := throttle.admit(loop.time())) is not None:
        log.warning("broker unreachable", extra={"suppressed": suppressed})
    ...
    throttle.reset()  # recovered: the next trouble is logged at once
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LogThrottle"]


@dataclass(slots=True)
class LogThrottle:
    """Whether to log now: the first time, then once per ``every`` seconds.

    :meth:`admit` answers ``None`` (stay quiet; counted) or the number of occurrences
    left out since the last line logged (0 the first time). :meth:`reset` forgets the
    trouble, so the next occurrence is logged at once.
    """

    every: float
    _last: float | None = None
    _suppressed: int = 0

    def __post_init__(self) -> None:
        if self.every < 0:
            raise ValueError("every must not be negative")

    def admit(self, now: float) -> int | None:
        """``now`` is a monotonic clock reading in seconds."""
        if self._last is not None and now - self._last < self.every:
            self._suppressed += 1
            return None
        suppressed, self._suppressed = self._suppressed, 0
        self._last = now
        return suppressed

    def reset(self) -> int:
        """Forget the trouble; answers how many occurrences were left out unlogged."""
        suppressed, self._suppressed = self._suppressed, 0
        self._last = None
        return suppressed

    @property
    def quiet(self) -> bool:
        """True while nothing has been logged since the last :meth:`reset`."""
        return self._last is None
