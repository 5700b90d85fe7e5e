"""A drainer's clock for due times: wall-clock stamps in the journal, monotonic waits.

Where it sits: inside :class:`relay.runtime.drainer.Drainer`, between the journal's
``next_at`` column and the drainer's sleeps.

Why it is shaped this way. A due time in the journal must survive a restart, so it is
stored as wall-clock seconds. But a wall clock can be stepped (NTP correcting a VM that
booted with the wrong time, an operator's ``date -s``), and a wait computed as
``next_at - time.time()`` follows every step: stepped back by an hour, a retry due in
3 s went out an hour late; stepped forward, every waiting retry fell due at once. So a
drainer reads the wall clock exactly once, when it starts, and from then on its "now"
is that reading advanced on the monotonic clock (:meth:`DueClock.now`). It stamps its
retries on that time and claims against it, so the retries it schedules itself wait
exactly their delay, whatever the wall clock does meanwhile. Steps shift this time
against the wall clock only until the next start; nothing but the drainer reads
``next_at`` (``created`` and ``updated`` stay on the journal's wall clock).

Rows stamped before the start (by the previous run) are read against the new wall
clock, and a step between the two runs is bounded by ``horizon``, the longest delay the
sink's policy can schedule (:func:`relay.core.delivery.retry_horizon`):

- stepped back: a row stamped more than ``horizon`` ahead is due now
  (:func:`~relay.core.delivery.effective_due`, applied by the claim's SQL as well); one
  stamped within ``horizon`` is late by at most ``horizon``.
- stepped forward: rows fall due early, each retried once early; its next retry is
  stamped on the new time. The claims still go through ``max_in_flight`` and
  ``rate_limit``, as after any restart with a backlog of due retries.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from relay.core.delivery import effective_due

__all__ = ["DueClock"]


class DueClock:
    """Wall-clock time read once at start, then advanced on the monotonic clock."""

    def __init__(
        self,
        *,
        horizon: float,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.horizon = horizon
        self._monotonic = monotonic
        self._offset = wall() - monotonic()

    def now(self) -> float:
        """The time to stamp due times with and to claim against (wall-clock seconds)."""
        return self._offset + self._monotonic()

    def until(self, next_at: float) -> float:
        """Seconds until a row stamped ``next_at`` is due (0: due now)."""
        now = self.now()
        return max(0.0, effective_due(next_at, now, self.horizon) - now)
