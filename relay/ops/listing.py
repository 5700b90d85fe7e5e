"""Which tenants the status page shows: searched, failing first, one page at a time.

Pure. :func:`parse_query` reads ``q``, ``page`` and ``per_page`` from a request's query
(a value out of bounds is refused with :class:`QueryError`, which the server answers
400 with its message: a wrong link should say so, not quietly show something else);
:func:`page_status` narrows a :class:`Status` to that page, with the tenants and sinks
that fail sorted before the healthy ones (stable otherwise: configuration order).
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from relay.runtime.status import SinkStatus, Status, TenantsPage, TenantStatus

__all__ = [
    "DEFAULT_PER_PAGE",
    "FAILING_STATES",
    "MAX_PER_PAGE",
    "MAX_QUERY",
    "PAGING_PARAMS",
    "QueryError",
    "TenantQuery",
    "page_status",
    "parse_query",
    "sink_rank",
    "tenant_rank",
]

DEFAULT_PER_PAGE = 50
MAX_PER_PAGE = 500
MAX_PAGE = 1_000_000
MAX_QUERY = 200
PAGING_PARAMS = ("q", "page", "per_page")

# Failing first: the order of the tenants table, by state. An api2 tenant is
# "refusing" (its recent callbacks were all refused: failing, next to "failed") or
# "callback" (served, ranked with the healthy "connected"; configuration order between).
_TENANT_ORDER = ("failed", "refusing", "backoff", "paused", "starting", "stopped", "connected")
_TENANT_RANK = {state: i for i, state in enumerate(_TENANT_ORDER)} | {
    "callback": len(_TENANT_ORDER) - 1
}
# The states that make the page's banner say "Degraded".
FAILING_STATES = ("failed", "refusing")


class QueryError(ValueError):
    """A paging or search parameter out of bounds (the message says which and why)."""


@dataclass(frozen=True, slots=True)
class TenantQuery:
    q: str = ""
    page: int = 1
    per_page: int = DEFAULT_PER_PAGE

    def link(self, **changes: object) -> str:
        """The query string of this query with ``changes`` (``q`` left out when empty)."""
        query = dataclasses.replace(self, **changes)  # type: ignore[arg-type]
        params: dict[str, object] = {"q": query.q} if query.q else {}
        params.update(page=query.page, per_page=query.per_page)
        return urlencode(params)


def _whole(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise QueryError(f"{name} must be a whole number from {low} to {high}") from None
    if not low <= value <= high:
        raise QueryError(f"{name} must be a whole number from {low} to {high}, not {value}")
    return value


def parse_query(params: Mapping[str, str]) -> TenantQuery:
    """The tenant query in ``params`` (other parameters are ignored)."""
    q = params.get("q", "").strip()
    if len(q) > MAX_QUERY:
        raise QueryError(f"q must be at most {MAX_QUERY} characters")
    return TenantQuery(
        q=q,
        page=_whole(params, "page", 1, 1, MAX_PAGE),
        per_page=_whole(params, "per_page", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE),
    )


def _rank_of(state: str) -> int:
    return _TENANT_RANK.get(state, _TENANT_RANK["starting"])


def tenant_rank(tenant: TenantStatus) -> int:
    """0 for a failed tenant, up to the healthy (connected, callback) ones last."""
    return _rank_of(tenant.state)


def sink_rank(sink: SinkStatus) -> int:
    """0 for a sink that cannot deliver (not connected, or blocked by a resource alarm
    of RabbitMQ), 1 for a disabled one, 2 for a healthy one."""
    if sink.disabled:
        return 1
    return 2 if sink.connected and not sink.blocked else 0


def page_status(status: Status, query: TenantQuery) -> Status:
    """``status`` with only the tenants of ``query``'s page (failing first) and its
    ``tenants_page``; the sinks sorted failing first. A page past the last is empty."""
    needle = query.q.casefold()
    matched = [t for t in status.tenants if needle in t.name.casefold()] if needle else []
    ranked = sorted(matched if needle else status.tenants, key=tenant_rank)
    first = (query.page - 1) * query.per_page
    states = collections.Counter(t.state for t in status.tenants)
    page = TenantsPage(
        q=query.q,
        page=query.page,
        per_page=query.per_page,
        pages=max(1, math.ceil(len(ranked) / query.per_page)),
        matched=len(ranked),
        total=len(status.tenants),
        states=dict(sorted(states.items(), key=lambda item: _rank_of(item[0]))),
    )
    return dataclasses.replace(
        status,
        tenants=tuple(ranked[first : first + query.per_page]),
        sinks=tuple(sorted(status.sinks, key=sink_rank)),
        tenants_page=page,
    )
