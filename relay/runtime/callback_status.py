"""What the status page knows about the ``api = "api2"`` tenants: their callbacks.

Where it sits: an api2 tenant has no listen worker (its mail arrives by callback on
``/callback/<tenant>``, :mod:`relay.gateway.callback`), so nothing fills a
:class:`relay.runtime.status.ListenerStatus` for it. The receiver already reports every
answer to the observer seam (``Observer.callback(tenant, outcome, seconds)``, the
``exmail_relay_callbacks_total`` counter) and every commit (``tenant(name).committed``).
:class:`CallbackBoard` sits on that seam, in front of the Prometheus observer: it keeps
one :class:`CallbackTally` per api2 tenant and passes every report on unchanged, so the
metrics and the status page count the same reports (one path, two views).

A tenant's state is ``"callback"`` (it is served; fine or never called yet) or
``"refusing"``: its last :data:`REFUSING_AFTER` or more answers in a row were refusals
(no 200 since). Three, because a sender retries a callback it could not deliver (WeCom:
3 attempts), so one real callback refused for a wrong Token or key is already three
refusals, while a single stray or forged request to the public URL is not enough to
mark the tenant as failing. Readiness ignores api2 tenants: being called is not in our
hands, and making a replica unready because of refused (maybe forged) requests would take
it out of the Service that receives the real ones.

Nothing here sees a Token, a key or a request body: only the tenant's name, the outcome
(a fixed, low-cardinality word) and the time.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from relay.runtime.observer import ForwardingObserver, ForwardingTenantObserver, Observer
from relay.runtime.status import CallbackStatus, TenantStatus, _JsonRecord

if TYPE_CHECKING:
    from relay.core.events import Event
    from relay.runtime.observer import TenantObserver

__all__ = [
    "ANSWERED",
    "REFUSING_AFTER",
    "CallbackBoard",
    "CallbackTally",
]

# Outcomes answered 200: everything else the receiver reports is a refusal's reason.
ANSWERED: Final = ("verified", "accepted", "duplicate", "ignored")
REFUSING_AFTER: Final = 3


@dataclass
class CallbackTally:
    """One api2 tenant's callbacks so far (mutable, loop-owned; fed by the board)."""

    tenant: str
    last_at: float | None = None
    last_ok_at: float | None = None
    last_event_at: float | None = None
    answered: collections.Counter[str] = field(default_factory=collections.Counter)
    refused: collections.Counter[str] = field(default_factory=collections.Counter)
    refused_in_a_row: int = 0
    last_refused: str | None = None
    last_refused_at: float | None = None
    events_by_type: collections.Counter[str] = field(default_factory=collections.Counter)
    # (time, type, id, subject), as ListenerStatus.recent: the "Latest events" list.
    recent: collections.deque[tuple[float, str, str, str]] = field(
        default_factory=lambda: collections.deque(maxlen=50)
    )
    # The tenant's directory polls (relay.runtime.directory2), when it has them.
    directory: Callable[[], _JsonRecord] | None = None

    @property
    def state(self) -> str:
        return "refusing" if self.refused_in_a_row >= REFUSING_AFTER else "callback"

    def answer(self, outcome: str, now: float) -> None:
        """The receiver answered one request with ``outcome``."""
        self.last_at = now
        if outcome in ANSWERED:
            self.answered[outcome] += 1
            self.last_ok_at = now
            self.refused_in_a_row = 0
        else:
            self.refused[outcome] += 1
            self.refused_in_a_row += 1
            self.last_refused, self.last_refused_at = outcome, now

    def commit(self, events: Iterable[Event], now: float) -> None:
        """``events`` of an accepted callback were committed to the journal."""
        for event in events:
            self.events_by_type[event.type] += 1
            self.recent.append((now, event.type, event.id, event.subject))
            self.last_event_at = now

    def to_tenant(self) -> TenantStatus:
        """The tenant's row of ``/status.json``: ``last_error`` is the newest refusal
        (``refused: <reason>``), ``failures`` the refusals since the last 200."""
        return TenantStatus(
            name=self.tenant,
            state=self.state,
            ver=None,
            last_event_at=self.last_event_at,
            last_error=None if self.last_refused is None else f"refused: {self.last_refused}",
            last_error_at=self.last_refused_at,
            failures=self.refused_in_a_row,
            events_by_type=dict(self.events_by_type),
            api="api2",
            callbacks=CallbackStatus(
                last_at=self.last_at,
                last_ok_at=self.last_ok_at,
                verified=self.answered["verified"],
                accepted=self.answered["accepted"],
                duplicate=self.answered["duplicate"],
                ignored=self.answered["ignored"],
                refused=dict(sorted(self.refused.items())),
                refused_in_a_row=self.refused_in_a_row,
                last_refused=self.last_refused,
                last_refused_at=self.last_refused_at,
            ),
            directory=None if self.directory is None else self.directory(),
        )


class _CommitTally(ForwardingTenantObserver):
    def __init__(self, inner: TenantObserver, tally: CallbackTally, clock: Callable[[], float]):
        super().__init__(inner)
        self._tally = tally
        self._clock = clock

    def committed(self, events: Sequence[Event]) -> None:
        self._tally.commit(events, self._clock())
        self.inner.committed(events)


class CallbackBoard(ForwardingObserver):
    """The observer handed to the callback receiver: tallies the reports about
    ``tenants`` (the api2 ones) and passes every report on to ``inner``."""

    def __init__(
        self,
        inner: Observer,
        tenants: Iterable[str],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(inner)
        self._clock = clock
        self.tallies: dict[str, CallbackTally] = {name: CallbackTally(name) for name in tenants}
        # One handle per api2 tenant, made at its first commit (the receiver asks per commit).
        self._handles: dict[str, TenantObserver] = {}

    def tenant(self, tenant: str) -> TenantObserver:
        tally = self.tallies.get(tenant)
        if tally is None:
            return self.inner.tenant(tenant)
        handle = self._handles.get(tenant)
        if handle is None:
            handle = self._handles[tenant] = _CommitTally(
                self.inner.tenant(tenant), tally, self._clock
            )
        return handle

    def callback(self, tenant: str, outcome: str, seconds: float) -> None:
        tally = self.tallies.get(tenant)
        if tally is not None:
            tally.answer(outcome, self._clock())
        self.inner.callback(tenant, outcome, seconds)
