"""Which tenants the status page shows: the query's bounds, search, failing first,
paging; and the page's search form, pager and dead-letter links. Pure."""

from __future__ import annotations

import html
import random
import re
from dataclasses import replace

import pytest

from relay.ops.listing import (
    MAX_PER_PAGE,
    QueryError,
    TenantQuery,
    page_status,
    parse_query,
)
from relay.ops.page import render_status_page
from relay.runtime.status import (
    ListenerStatus,
    RecentEvent,
    SinkStatus,
    TenantStatus,
    _recent,
)
from tests.ops.test_ops_page import sample

STATES = ("connected", "failed", "backoff", "connected", "paused", "starting", "stopped")


def tenants(count: int) -> tuple[TenantStatus, ...]:
    base = sample().tenants[0]
    return tuple(
        replace(base, name=f"tenant-{i:05d}", state=STATES[i % len(STATES)], last_error=None)
        for i in range(count)
    )


def sink(name: str, *, connected: bool = True, disabled: str | None = None) -> SinkStatus:
    return replace(sample().sinks[0], name=name, connected=connected, disabled=disabled)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"page": "0"}, "page must be a whole number from 1 to 1000000, not 0"),
        ({"page": "two"}, "page must be a whole number from 1 to 1000000"),
        ({"per_page": "501"}, f"per_page must be a whole number from 1 to {MAX_PER_PAGE}"),
        ({"per_page": "-5"}, "per_page must be a whole number from 1 to 500, not -5"),
        ({"q": "x" * 201}, "q must be at most 200 characters"),
    ],
)
def test_out_of_bounds_values_are_refused_with_a_reason(
    params: dict[str, str], message: str
) -> None:
    with pytest.raises(QueryError, match=re.escape(message)):
        parse_query(params)


def test_defaults_and_blank_values() -> None:
    assert parse_query({}) == TenantQuery(q="", page=1, per_page=50)
    assert parse_query({"q": "  acme ", "page": " ", "per_page": "20", "x": "y"}) == TenantQuery(
        q="acme", page=1, per_page=20
    )


def test_failing_tenants_and_sinks_come_first_then_configuration_order() -> None:
    sinks = (sink("console"), sink("amqp", connected=False), sink("webhook:a", disabled="410"))
    status = sample(tenants=tenants(14), sinks=sinks)
    paged = page_status(status, TenantQuery(per_page=100))
    assert [t.state for t in paged.tenants] == [
        *["failed"] * 2,
        *["backoff"] * 2,
        *["paused"] * 2,
        *["starting"] * 2,
        *["stopped"] * 2,
        *["connected"] * 4,
    ]
    assert [t.name for t in paged.tenants[:2]] == ["tenant-00001", "tenant-00008"]
    assert [s.name for s in paged.sinks] == ["amqp", "webhook:a", "console"]
    page = paged.tenants_page
    assert page is not None
    assert (page.matched, page.total, page.pages) == (14, 14, 1)
    assert list(page.states) == ["failed", "backoff", "paused", "starting", "stopped", "connected"]
    assert page.states["connected"] == 4


def test_search_is_a_case_insensitive_substring_and_pages_are_slices() -> None:
    status = sample(tenants=tenants(10_000))
    found = page_status(status, TenantQuery(q="TENANT-0012", per_page=5, page=2))
    page = found.tenants_page
    assert page is not None
    assert (page.matched, page.total, page.pages, page.page) == (10, 10_000, 2, 2)
    assert len(found.tenants) == 5
    assert all("tenant-0012" in t.name for t in found.tenants)
    assert page.states["failed"] == sum(1 for t in status.tenants if t.state == "failed")
    beyond = page_status(status, TenantQuery(q="tenant-0012", per_page=5, page=9))
    assert beyond.tenants == ()
    nothing = page_status(status, TenantQuery(q="nobody"))
    assert nothing.tenants == () and nothing.tenants_page is not None
    assert (nothing.tenants_page.matched, nothing.tenants_page.pages) == (0, 1)
    # The whole status of 10 000 tenants pages into 50-row pages; JSON only when asked.
    first = page_status(status, TenantQuery())
    assert len(first.tenants) == 50 and first.tenants_page is not None
    assert first.tenants_page.pages == 200
    assert "tenants_page" not in status.to_json()
    assert first.to_json()["tenants_page"]["total"] == 10_000


def test_the_page_has_search_pager_summary_and_the_query_for_its_refresh() -> None:
    status = sample(tenants=tenants(120), sinks=(sink("webhook:crm&co"),))
    page = render_status_page(page_status(status, parse_query({"q": "tenant-000", "page": "2"})))
    assert '<form id="tenant-search" method="get">' in page
    assert 'name="q" value="tenant-000"' in page
    assert 'data-tenants-query="q=tenant-000&amp;page=2&amp;per_page=50"' in page
    summary = re.search(r'<small id="tenants-summary">(.*?)</small>', page)
    assert summary is not None
    assert html.unescape(summary[1]) == (
        "100 of 120 tenants match; page 2 of 2 · all tenants: 17 failed, 17 backing off, "
        "17 paused (backpressure), 17 starting, 17 stopped, 35 connected"
    )
    pager = re.search(r'<nav id="tenants-pager">(.*?)</nav>', page)
    assert pager is not None
    assert 'href="?q=tenant-000&amp;page=1&amp;per_page=50"' in pager[1]
    assert "next" not in pager[1]
    assert page.count('<tr data-tenant="') == 50
    # The dead-letter count links to the admin API, the sink name encoded.
    assert (
        '<td data-k="dead" class="num"><a href="admin/v1/deadletters?sink=webhook%3Acrm%26co">'
        "1</a></td>"
    ) in page
    # A failed tenant on another page still turns the banner red.
    healthy = sample(
        tenants=(
            *(replace(t, state="connected") for t in tenants(120)[:-1]),
            replace(tenants(1)[0], name="zz", state="failed"),
        ),
        sinks=(sink("console"),),
    )
    last_page_first = render_status_page(page_status(healthy, TenantQuery(q="tenant")))
    assert '<div id="banner" class="bad">Degraded</div>' in last_page_first
    assert 'data-tenant="zz"' not in last_page_first


def _sorted_recent(
    listeners: list[ListenerStatus], limit: int
) -> list[tuple[float, str, str, str]]:
    """The plain definition: every recent event of every tenant, sorted, the first few."""
    every = sorted(
        ((stamp, st.tenant, etype, eid) for st in listeners for stamp, etype, eid, _ in st.recent),
        reverse=True,
    )
    return every[:limit]


@pytest.mark.parametrize("seed", range(40))
def test_the_newest_events_of_many_tenants_are_those_of_a_full_sort(seed: int) -> None:
    rnd = random.Random(seed)
    listeners = []
    for i in range(rnd.randint(0, 30)):
        st = ListenerStatus(tenant=f"{rnd.choice('abc')}{i}")
        for j in range(rnd.randint(0, 60)):  # the deque keeps the last 50
            stamp = float(rnd.randint(0, 40))  # many ties: the tenant name decides
            st.recent.append((stamp, rnd.choice(["exmail.mail.new", "exmail.x"]), f"{i}-{j}", None))
        listeners.append(st)
    limit = rnd.choice([0, 1, 5, 50])
    recent: tuple[RecentEvent, ...] = _recent(listeners, show_content=False, limit=limit)
    assert [(e.time, e.tenant, e.type, e.id) for e in recent] == _sorted_recent(listeners, limit)
