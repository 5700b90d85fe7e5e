"""The unread-count cache: the last count seen per user, fed from ``listen`` and from
the second API's new-mail callbacks.

The listener commits two kinds of events that carry a user's unread count: the unread
push (``exmail.mail.unread``) and the new-mail push (``exmail.mail.new``, its ``unread``
is the push's NewCount). :class:`UnreadFeed` is an :class:`~relay.runtime.observer.Observer`
wrapped around the real one: it forwards every report unchanged and, for committed
events, records those counts with the event's time. The journal is never read.

A tenant of the second API (``api = "api2"``) has no ``listen``: its ``Mail`` and
``UnRead`` callbacks become the same two events, committed by the callback receiver
(:mod:`relay.gateway.callback`), whose observer is wrapped by the same feed; their
counts are recorded with source ``callback``. A callback is received by whichever
replica the sender reached, so in lease mode only that replica's cache sees it: the
owner answering the gateway may not, and then asks ``mail/newcount`` once ``max_age``
has passed (docs/gateway.md).

``GET /v1/tenants/{tenant}/users/{email}/unread?max_age=S`` answers from here when the
count is younger than ``S`` seconds (``source`` ``listen``, ``callback`` or ``cache``), else calls
``mail/newcount`` and records the answer (``source`` ``upstream``).

Bounded: past ``max_entries`` users the least recently updated entry is dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from relay.core.events import MAIL_NEW, MAIL_UNREAD
from relay.runtime.observer import (
    ForwardingObserver,
    ForwardingTenantObserver,
    Observer,
    TenantObserver,
)

if TYPE_CHECKING:
    from relay.core.events import Event

__all__ = ["UnreadCache", "UnreadCount", "UnreadFeed"]

Source = Literal["listen", "callback", "upstream"]


@dataclass(frozen=True, slots=True)
class UnreadCount:
    count: int
    at: float
    """Wall-clock seconds when the count was true (the push's or the answer's time)."""
    source: Source


class UnreadCache:
    def __init__(self, *, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._counts: dict[tuple[str, str], UnreadCount] = {}

    def __len__(self) -> int:
        return len(self._counts)

    @staticmethod
    def _key(tenant: str, user: str) -> tuple[str, str]:
        return tenant, user.strip().lower()

    def get(self, tenant: str, user: str) -> UnreadCount | None:
        return self._counts.get(self._key(tenant, user))

    def record(self, tenant: str, user: str, count: int, *, at: float, source: Source) -> None:
        """Keep ``count`` unless a newer one is held already."""
        key = self._key(tenant, user)
        held = self._counts.pop(key, None)
        if held is not None and held.at > at:
            self._counts[key] = held
            return
        self._counts[key] = UnreadCount(count, at, source)
        while len(self._counts) > self.max_entries:
            del self._counts[next(iter(self._counts))]

    def feed(self, tenant: str, events: Sequence[Event], source: Source = "listen") -> None:
        """Record the counts that committed ``events`` carry."""
        for event in events:
            if event.type not in (MAIL_NEW, MAIL_UNREAD):
                continue
            user, unread = event.data.get("user"), event.data.get("unread")
            if isinstance(user, str) and isinstance(unread, int) and not isinstance(unread, bool):
                self.record(tenant, user, unread, at=event.time.timestamp(), source=source)


class _FeedTenant(ForwardingTenantObserver):
    def __init__(
        self, inner: TenantObserver, cache: UnreadCache, tenant: str, source: Source
    ) -> None:
        super().__init__(inner)
        self._cache = cache
        self._tenant = tenant
        self._source: Source = source

    def committed(self, events: Sequence[Event]) -> None:
        self.inner.committed(events)
        self._cache.feed(self._tenant, events, self._source)


class UnreadFeed(ForwardingObserver):
    """``inner`` unchanged, plus every committed unread count into ``cache``; the counts
    of ``callback_tenants`` (the api2 ones) with source ``callback``."""

    def __init__(
        self, inner: Observer, cache: UnreadCache, callback_tenants: Iterable[str] = ()
    ) -> None:
        super().__init__(inner)
        self.cache = cache
        self.callback_tenants = frozenset(callback_tenants)

    def tenant(self, tenant: str) -> TenantObserver:
        source: Source = "callback" if tenant in self.callback_tenants else "listen"
        return _FeedTenant(self.inner.tenant(tenant), self.cache, tenant, source)
