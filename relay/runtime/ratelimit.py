"""The drainer's rate limit (``rate_limit`` in the configuration): a token bucket.

Where it sits: :class:`relay.runtime.drainer.Drainer` awaits :meth:`RateLimiter.acquire`
before it starts each attempt, so a receiver sees at most ``rate`` new requests per
second. Attempts already in flight are not counted: the limit spaces the *starts*.

The arithmetic: the bucket holds ``max(1, rate)`` tokens and starts full, so a burst of
up to ``rate`` starts (at least one) goes out at once; it refills at ``rate`` tokens per
second and never above its size, so an idle minute does not buy a bigger burst. In any
interval of ``t`` seconds at most ``max(1, rate) + rate * t`` attempts start.

The clock and the sleep are injected (production: the drainer's monotonic clock and
:func:`asyncio.sleep`, so a step of the wall clock neither stalls nor refills the
bucket), and the arithmetic is tested without waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

__all__ = ["RateLimiter"]

_EPSILON = 1e-9


class RateLimiter:
    """A token bucket allowing ``rate`` starts per second, bursts of up to ``rate``."""

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive (0 means no limiter at all)")
        self.rate = rate
        self.burst = max(1.0, rate)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._stamp = clock()

    async def acquire(self) -> None:
        """Return once one more start is allowed, taking its token."""
        while True:
            now = self._clock()
            # max(0, ...): a wall clock stepped back must not take tokens away.
            elapsed = max(0.0, now - self._stamp)
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
            self._stamp = now
            # A hair of tolerance: after sleeping exactly the missing fraction, float
            # rounding can leave 0.999...; asking to sleep again for less than the
            # clock's resolution would spin.
            if self._tokens >= 1.0 - _EPSILON:
                self._tokens -= 1.0
                return
            await self._sleep((1.0 - self._tokens) / self.rate)
