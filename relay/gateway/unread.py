"""The unread-count cache: the last count seen per user, fed from ``listen``.

The listener commits two kinds of events that carry a user's unread count: the unread
push (``exmail.mail.unread``) and the new-mail push (``exmail.mail.new``, its ``unread``
is the push's NewCount). :class:`UnreadFeed` is an :class:`~relay.runtime.observer.Observer`
wrapped around the real one: it forwards every report unchanged and, for committed
events, records those counts with the event's time. The journal is never read.

``GET /v1/tenants/{tenant}/users/{email}/unread?max_age=S`` answers from here when the
count is younger than ``S`` seconds (``source`` ``listen`` or ``cache``), else calls
``mail/newcount`` and records the answer (``source`` ``upstream``).

Bounded: past ``max_entries`` users the least recently updated entry is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
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

Source = Literal["listen", "upstream"]


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

    def feed(self, tenant: str, events: Sequence[Event]) -> None:
        """Record the counts that committed ``events`` carry."""
        for event in events:
            if event.type not in (MAIL_NEW, MAIL_UNREAD):
                continue
            user, unread = event.data.get("user"), event.data.get("unread")
            if isinstance(user, str) and isinstance(unread, int) and not isinstance(unread, bool):
                self.record(tenant, user, unread, at=event.time.timestamp(), source="listen")


class _FeedTenant(ForwardingTenantObserver):
    def __init__(self, inner: TenantObserver, cache: UnreadCache, tenant: str) -> None:
        super().__init__(inner)
        self._cache = cache
        self._tenant = tenant

    def committed(self, events: Sequence[Event]) -> None:
        self.inner.committed(events)
        self._cache.feed(self._tenant, events)


class UnreadFeed(ForwardingObserver):
    """``inner`` unchanged, plus every committed unread count into ``cache``."""

    def __init__(self, inner: Observer, cache: UnreadCache) -> None:
        super().__init__(inner)
        self.cache = cache

    def tenant(self, tenant: str) -> TenantObserver:
        return _FeedTenant(self.inner.tenant(tenant), self.cache, tenant)
