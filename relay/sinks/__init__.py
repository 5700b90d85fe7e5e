"""Sinks: where journaled events go. Each sink is one small seam, :class:`Sink`.

A sink sends one delivery and says how it went; it never touches the journal. The
:class:`relay.runtime.drainer.Drainer` owns the loop around it: claiming due rows, concurrency,
rate limits, retry decisions and recording outcomes. Tests can therefore drive any sink
with a plain object that has ``name``, ``connected`` and ``send``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from relay.journal import Delivery

__all__ = ["Dead", "Delivered", "Disable", "Outcome", "Retry", "Sink", "Unavailable"]


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
    """The destination asked never to be called again (HTTP 410)."""

    error: str


Outcome = Delivered | Retry | Dead | Unavailable | Disable


class Sink(Protocol):
    """One destination. ``connected`` feeds readiness; ``send`` makes one attempt."""

    @property
    def name(self) -> str: ...

    @property
    def connected(self) -> bool: ...

    async def send(self, delivery: Delivery) -> Outcome: ...
