"""The gateway's limits: a token bucket per client, a concurrency gate per tenant.

- :class:`TokenBucket` (pure: the clock is passed in) holds ``burst`` tokens, refills at
  ``rate`` per second and never above ``burst``. A call takes one token or is refused
  with the seconds until one is there, which becomes ``429`` + ``Retry-After``.
- :class:`TenantGate` bounds the upstream calls the gateway runs at once for one tenant.
  A call waits up to ``queue_timeout`` for a slot, then is refused with ``503`` +
  ``Retry-After: 1``: the tenant is saturated by *all* clients together, so it is the
  server's capacity that ran out, not this client's allowance (that is the 429 above).

Neither limit touches ``listen``: the listener has its own client and connection pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator

from relay.gateway.problems import Problem

__all__ = ["TenantGate", "TokenBucket", "retry_after"]


class TokenBucket:
    """``burst`` calls at once, ``rate`` per second sustained."""

    __slots__ = ("_stamp", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = float(burst)
        self._tokens = self.burst
        self._stamp = now

    def take(self, now: float) -> float:
        """0.0 when a token was taken; else the seconds until one will be there."""
        # max(0, ...): a clock that stepped back must not take tokens away.
        self._tokens = min(self.burst, self._tokens + max(0.0, now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate


def retry_after(seconds: float) -> str:
    """A ``Retry-After`` value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


class TenantGate:
    """At most ``limit`` gateway calls to one tenant's Exmail at once."""

    def __init__(self, limit: int, *, queue_timeout: float) -> None:
        self.limit = limit
        self.queue_timeout = queue_timeout
        self._slots = asyncio.Semaphore(limit)

    @contextlib.asynccontextmanager
    async def slot(self, tenant: str) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self.queue_timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise Problem(
                503,
                "tenant-busy",
                "Too many calls to this tenant",
                f"{self.limit} calls to tenant {tenant!r} are running; try again shortly",
                headers={"Retry-After": "1"},
            ) from None
        try:
            yield
        finally:
            self._slots.release()
