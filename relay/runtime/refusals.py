"""What one drainer knows while the journal refuses its writes.

Where it sits: inside :class:`relay.runtime.drainer.Drainer`, which decides *when* to
pause and retry; this holds *what* it knows meanwhile: the error (shown as
``last_error``, ``failing``, and by readiness), how many writes were refused in a row,
the backoff step, the rate-limited log, and the outcomes it could not record.

Held outcomes (:attr:`JournalRefusals.held`) are the point: a delivery that went out
but whose outcome the journal refused is kept here, and its row is skipped by claims,
so it is not sent again while the process lives; the drainer retries the write of the
held outcomes alone until it goes through.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from relay.core.delivery import Settlement
from relay.core.throttle import LogThrottle
from relay.journal import JournalError

__all__ = ["LOG_EVERY", "JournalRefusals"]

log = logging.getLogger("relay.runtime.drainer")

# While the journal keeps refusing writes, log again at most this often (seconds).
LOG_EVERY = 60.0


@dataclass(slots=True)
class JournalRefusals:
    """One sink's journal trouble; empty (``error is None``) while writes go through."""

    sink: str
    clock: Callable[[], float]
    error: str | None = None  # "journal: <why>" while refused
    failures: int = 0  # writes refused in a row
    streak: int = 0  # backoff steps taken
    pause_due: bool = False  # the drainer should pause before its next claim
    read_failed: bool = False  # the refusal was a read: the next good claim clears it
    throttle: LogThrottle = field(default_factory=lambda: LogThrottle(every=LOG_EVERY))
    held: dict[int, Settlement] = field(default_factory=dict)

    def refused(self, error: JournalError, *, during: str) -> None:
        """A write was refused: remember why, ask for a pause, log (rate-limited)."""
        now = self.clock()
        first = self.error is None
        self.error = f"journal: {error.reason}"
        self.failures += 1
        self.pause_due = True
        if first:
            self.throttle.reset()
        if self.throttle.admit(now) is not None:
            log.error(
                "journal read failed, pausing the sink"
                if during == "read"
                else "journal write failed, pausing the sink",
                extra={
                    "sink": self.sink,
                    "during": during,
                    "error": str(error),
                    "failures": self.failures,
                },
            )

    def recovered(self) -> None:
        """A write went through: forget the trouble (held outcomes stay until written)."""
        if self.error is None:
            return
        log.info(
            "journal writes recovered", extra={"sink": self.sink, "after_failures": self.failures}
        )
        self.error = None
        self.failures = 0
        self.streak = 0
        self.pause_due = False
        self.read_failed = False

    def hold(self, update: Settlement) -> None:
        self.held[update.seq] = update

    def written(self, updates: list[Settlement]) -> None:
        for update in updates:
            self.held.pop(update.seq, None)
