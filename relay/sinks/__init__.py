"""Sinks: where journaled events go. Each sink is one small seam, :class:`Sink`.

A sink sends one delivery and says how it went; it never touches the journal. The
:class:`relay.runtime.drainer.Drainer` owns the loop around it: claiming due rows, concurrency,
rate limits, retry decisions and recording outcomes. Tests can therefore drive any sink
with a plain object that has ``name``, ``connected`` and ``send``.
"""

from __future__ import annotations

from typing import Protocol

from relay.core.delivery import (
    Dead,
    Delivered,
    Delivery,
    Disable,
    Outcome,
    Retry,
    Unavailable,
)

__all__ = ["Dead", "Delivered", "Disable", "Outcome", "Retry", "Sink", "Unavailable"]


class Sink(Protocol):
    """One destination. ``connected`` feeds readiness; ``send`` makes one attempt."""

    @property
    def name(self) -> str: ...

    @property
    def connected(self) -> bool: ...

    async def send(self, delivery: Delivery) -> Outcome: ...
