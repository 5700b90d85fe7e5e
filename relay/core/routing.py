"""Routing: which sinks an event goes to. Pure, no I/O.

Each sink has a route: event-type patterns (``*``, ``exmail.mail.*``, or an exact type)
and an optional tenant list (empty: every tenant). The journal stores one delivery row
per matching sink when the event is appended, so a sink added later does not receive
history, and a filter change applies to new events only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from relay.core.events import Event, type_matches

__all__ = ["Route", "Router"]


@dataclass(frozen=True, slots=True)
class Route:
    sink: str
    types: tuple[str, ...] = ("*",)
    tenants: frozenset[str] = frozenset()

    def matches(self, event: Event) -> bool:
        if self.tenants and event.tenant not in self.tenants:
            return False
        return any(type_matches(event.type, pattern) for pattern in self.types)


@dataclass(frozen=True, slots=True)
class Router:
    """Callable ``event -> sink names``, as :meth:`relay.journal.Journal.append` wants."""

    routes: tuple[Route, ...]

    def __call__(self, event: Event) -> Sequence[str]:
        return [route.sink for route in self.routes if route.matches(event)]

    @property
    def sinks(self) -> list[str]:
        return [route.sink for route in self.routes]
