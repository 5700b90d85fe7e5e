"""The backoff policy for retried reads: capped exponential backoff with full jitter.

Pure: the random fraction is passed in, so the policy is tested without a clock or
an event loop. ``delay(attempt, fraction)`` is ``fraction * min(cap, base * 2**attempt)``
("full jitter": spreads clients that failed together over the whole window).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff"]


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
