"""Pacing: how many tenants may go to Exmail's token endpoint (or bootstrap) per second.

A replica that starts, or takes over a dead peer's shards, would otherwise fetch a token
for every one of those tenants at once: 1,884 fetches in about a second in the issue's
measurement. Exmail's limits are unknown, and its token endpoint is not ours to storm.
So every token fetch and every bootstrap takes a *turn*, and turns come from a token
bucket: ``rate`` per second, at most ``burst`` at once after a quiet spell.

:class:`TokenBucket` is the bucket; :class:`TurnQueue` hands its tokens to waiters in
the order they arrived (first come, first served; a waiter that leaves gives its place
up). Both are pure: time is passed in, nothing sleeps. The shell that sleeps is
:class:`relay.runtime.pacing.Pacer`.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Generic, TypeVar

__all__ = ["TokenBucket", "TurnQueue", "default_burst"]

K = TypeVar("K")


def default_burst(rate: float) -> int:
    """The burst that goes with ``rate``: a quarter of a second's worth, at least 1.

    Small, so that no window of one second sees much more than ``rate`` (at most
    ``rate + burst``), yet a handful of tenants (a small deployment's takeover) goes at
    once; and it grows with the rate, so a very high rate really is unpaced.
    """
    return max(1, math.ceil(rate / 4))


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` held; starts full at ``now``."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        if rate <= 0:
            raise ValueError("rate must be above 0")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._at = now

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self.rate:g}, burst={self.burst}, tokens={self._tokens:.2f})"

    def _refill(self, now: float) -> None:
        if now > self._at:  # a clock that stands still or steps back adds nothing
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
            self._at = now

    def tokens(self, now: float) -> float:
        self._refill(now)
        return self._tokens

    def take(self, now: float) -> bool:
        """Take one token if there is one now."""
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def delay(self, now: float) -> float:
        """Seconds until one token is there (0: now)."""
        self._refill(now)
        return 0.0 if self._tokens >= 1.0 else (1.0 - self._tokens) / self.rate

    def give_back(self, now: float) -> None:
        """Return a token taken but not used (never above ``burst``)."""
        self._refill(now)
        self._tokens = min(float(self.burst), self._tokens + 1.0)


class TurnQueue(Generic[K]):
    """Waiters (keys) in arrival order, admitted one token each, head first."""

    def __init__(self, bucket: TokenBucket) -> None:
        self.bucket = bucket
        self._waiting: OrderedDict[K, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._waiting)

    def __repr__(self) -> str:
        return f"TurnQueue({self.bucket!r}, waiting={len(self._waiting)})"

    def arrive(self, key: K, now: float) -> bool:
        """True: ``key`` goes now (nobody is ahead and a token is there); else it
        queues behind the others (:meth:`admit` lets it go later)."""
        if not self._waiting and self.bucket.take(now):
            return True
        self._waiting[key] = None
        return False

    def leave(self, key: K) -> None:
        """``key`` stopped waiting (its tenant was let go): its place is given up."""
        self._waiting.pop(key, None)

    def admit(self, now: float) -> list[K]:
        """The waiters whose turn it is now, removed from the queue, oldest first."""
        out: list[K] = []
        while self._waiting and self.bucket.take(now):
            key, _ = self._waiting.popitem(last=False)
            out.append(key)
        return out

    def next_in(self, now: float) -> float | None:
        """Seconds until the head's turn (``None``: nobody waits)."""
        if not self._waiting:
            return None
        return self.bucket.delay(now)

    def give_back(self, now: float) -> None:
        """A turn was granted but not used (its waiter was cancelled as it was let in)."""
        self.bucket.give_back(now)
