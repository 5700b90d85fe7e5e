"""Routing: which sinks an event goes to. Pure, no I/O.

Each sink has a route: event-type patterns (``*``, ``exmail.mail.*``, or an exact type)
and an optional tenant list (empty: every tenant). The journal stores one delivery row
per matching sink when the event is appended, so a sink added later does not receive
history, and a filter change applies to new events only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

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


# (tenant, type) pairs a router remembers; past that it starts over (a relay's tenants
# times its event types is far below it: 5 000 tenants x 7 types is 35 000).
ROUTER_MEMORY: Final = 65_536


@dataclass(frozen=True, slots=True)
class Router:
    """Callable ``event -> sink names``, as :meth:`relay.journal.Journal.append` wants.

    A route depends only on the event's tenant and type, so the answer for each pair is
    worked out once and kept (issue 20: routing was 2 % of the relay's main thread).
    """

    routes: tuple[Route, ...]
    _known: dict[tuple[str, str], tuple[str, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __call__(self, event: Event) -> Sequence[str]:
        key = (event.tenant, event.type)
        sinks = self._known.get(key)
        if sinks is None:
            sinks = self.route(event)
            if len(self._known) >= ROUTER_MEMORY:
                self._known.clear()
            self._known[key] = sinks
        return sinks

    def route(self, event: Event) -> tuple[str, ...]:
        """The sinks ``event`` goes to, worked out from the routes (not remembered)."""
        return tuple(route.sink for route in self.routes if route.matches(event))

    @property
    def sinks(self) -> list[str]:
        return [route.sink for route in self.routes]
