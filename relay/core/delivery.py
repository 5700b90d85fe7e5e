"""Deliveries, attempts, outcomes and settlements: the drain side's pure vocabulary.

Where it sits: the journal hands out :class:`Delivery` rows (a *claim*); a sink makes
one *attempt* at each and answers an :data:`Outcome`; :func:`decide` turns the outcome
into a :class:`Settlement`, which the journal records (*settle*). The sinks, the
journal and the drainer all speak these types, and none of them owns them: that is why
they live in the core, below all three.

Pure: no I/O, no clock (the caller passes ``now`` and the random source), so every
decision is exhaustively testable.

Due times (``next_at``) are wall-clock seconds, so that they survive a restart. A wall
clock can be stepped, though, and nothing here can tell a step from the passing of time.
What bounds the damage is :func:`retry_horizon`: no retry is ever scheduled further
ahead than that, so a row stamped further ahead was stamped on a clock that has since
gone back, and :func:`effective_due` makes it due now instead of hours later (the
journal's claim applies the same rule in SQL).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from relay.core.backoff import Backoff, schedule_delay

__all__ = [
    "Dead",
    "Delivered",
    "Delivery",
    "Disable",
    "DrainPolicy",
    "Outcome",
    "Retry",
    "Settlement",
    "Unavailable",
    "decide",
    "effective_due",
    "retry_horizon",
]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event due for one sink, as a claim hands it out."""

    sink: str
    seq: int
    event_id: str
    tenant: str
    type: str
    routing_key: str
    body: bytes
    created: float
    attempts: int
    next_at: float = 0.0
    # The W3C trace context the attempt goes out under (docs/operations.md, "Tracing"):
    # from the journal, the event's; the tracer puts its attempt span's in its place.
    traceparent: str | None = None
    tracestate: str | None = None


@dataclass(frozen=True, slots=True)
class Settlement:
    """What the journal records for one delivery after an attempt.

    ``state`` is the new state: ``pending`` (retry at ``next_at``), ``delivered`` or
    ``dead``. ``attempted`` is False for a row that was handed back untried.
    """

    seq: int
    state: Literal["pending", "delivered", "dead"]
    next_at: float = 0.0
    error: str | None = None
    attempted: bool = True


# -- outcomes: what one attempt reports ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivered:
    """The destination has the event."""


@dataclass(frozen=True, slots=True)
class Retry:
    """This delivery failed; try it again later (``retry_after`` seconds if the peer said)."""

    error: str
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class Dead:
    """This delivery can never succeed; make it a dead letter now."""

    error: str


@dataclass(frozen=True, slots=True)
class Unavailable:
    """The sink as a whole cannot deliver now (broker down): nothing was attempted."""

    error: str


@dataclass(frozen=True, slots=True)
class Disable:
    """The endpoint asked never to be called again (HTTP 410)."""

    error: str


Outcome = Delivered | Retry | Dead | Unavailable | Disable


# -- the decision ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DrainPolicy:
    """How one sink is drained. ``schedule=None`` retries forever with ``backoff``."""

    max_in_flight: int = 64
    schedule: Sequence[float] | None = None
    jitter: float = 0.2
    backoff: Backoff = field(default_factory=lambda: Backoff(base=0.5, cap=30.0))
    ordered: bool = False
    rate_limit: float = 0.0


def decide(
    policy: DrainPolicy,
    delivery: Delivery,
    outcome: Outcome,
    *,
    now: float,
    rand: Callable[[], float] = random.random,
) -> Settlement | None:
    """The settlement for one outcome (``None``: leave the row as it is)."""
    attempts = delivery.attempts + 1
    match outcome:
        case Delivered():
            return Settlement(delivery.seq, "delivered")
        case Dead(error=error):
            return Settlement(delivery.seq, "dead", error=error)
        case Unavailable():
            return None
        case Disable(error=error):
            return Settlement(delivery.seq, "pending", next_at=0.0, error=error)
        case Retry(error=error, retry_after=retry_after):
            if policy.schedule is None:
                delay: float | None = policy.backoff.delay(attempts - 1, rand())
            else:
                delay = schedule_delay(policy.schedule, attempts, jitter=policy.jitter, rand=rand)
                if delay is None:
                    return Settlement(delivery.seq, "dead", error=error)
            assert delay is not None
            if retry_after is not None:
                ceiling = max(policy.schedule) if policy.schedule else policy.backoff.cap
                delay = max(delay, min(retry_after, ceiling))
            return Settlement(delivery.seq, "pending", next_at=now + delay, error=error)


def retry_horizon(policy: DrainPolicy) -> float:
    """The longest delay :func:`decide` can put before a retry under ``policy``.

    The schedule's longest step with its jitter (or the backoff's cap); a
    ``Retry-After`` is capped below that already. A pending row due further ahead than
    this was stamped on a wall clock that has since been stepped back.
    """
    if policy.schedule:
        return max(policy.schedule) * (1.0 + abs(policy.jitter))
    return policy.backoff.cap


def effective_due(next_at: float, now: float, horizon: float) -> float:
    """When a pending row stamped ``next_at`` is due, seen at ``now``.

    As stamped, unless the stamp lies more than ``horizon`` (:func:`retry_horizon`)
    ahead of ``now``: no retry is scheduled that far ahead, so the wall clock went back
    since (or the schedule was shortened), and the row is due now rather than after the
    step has been waited out. A clock stepped forward needs no rule: rows fall due early,
    once each, as their retry is stamped on the new time.
    """
    return now if next_at > now + horizon else next_at
