"""The status page: one self-contained HTML document, rendered on the server.

Pure: ``render_status_page(status, charts=...) -> str`` turns a typed
:class:`relay.runtime.status.Status` (narrowed to one page of tenants by
:mod:`relay.ops.listing`) and the charts of the last hour (:mod:`relay.ops.page_charts`,
inline SVG) into HTML. No external assets, no build step. The first paint is complete
without JavaScript; a small inline script (:mod:`relay.ops.page_script`) then fetches
``status.json`` for the same page of tenants every few seconds and rewrites the figures in
place. The charts are drawn at each load (their points are 10 s apart).

The page shows only what ``status()`` hands it: no secrets are in the status, and event
subjects are present only when ``[status] show_content`` is on.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

from relay.ops.listing import FAILING_STATES
from relay.ops.page_script import SCRIPT, SCRIPT_READS
from relay.runtime.pollstate import DirectoryPollStatus, HeldStatus
from relay.runtime.status import (
    CallbackStatus,
    ClientStatus,
    JournalStatus,
    OrphanStatus,
    RecentEvent,
    ShardingStatus,
    SinkStatus,
    Status,
    TenantsPage,
    TenantStatus,
)

__all__ = [
    "DEADLETTERS_PATH",
    "REFRESH_SECONDS",
    "SCRIPT_READS",
    "deadletters_link",
    "held_label",
    "render_status_page",
    "sink_state",
    "tenant_state",
]

REFRESH_SECONDS = 5

DASH = "–"
# The admin API's dead letters (relay.ops.admin); relative, so a path prefix in front of
# the ops server (a proxy) still works.
DEADLETTERS_PATH = "admin/v1/deadletters"


def _time(stamp: float | None) -> str:
    if stamp is None:
        return DASH
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _e(value: object) -> str:
    return html.escape(DASH if value is None or value == "" else str(value))


def _age(seconds: float | None) -> str:
    return DASH if seconds is None else f"{seconds:.1f} s"


def _by_type(counts: Mapping[str, int]) -> str:
    if not counts:
        return DASH
    return ", ".join(f"{k.removeprefix('exmail.')} {v}" for k, v in sorted(counts.items()))


_TENANT_LABEL = {
    "connected": "connected",
    "backoff": "backing off",
    "failed": "failed",
    "paused": "paused (backpressure)",
    "starting": "starting",
    "stopped": "stopped",
    "waiting": "waiting for its turn (takeover_rate)",
    "refusing": "refusing callbacks",
    "callback": "by callback",
}


def held_label(held: HeldStatus) -> str:
    """A directory listing held for its deletions (docs/protocol.md), counts only."""
    if held.confirm_polls:
        polls = f"poll {held.polls} of {held.confirm_polls}"
    else:
        polls = f"poll {held.polls}, never confirmed by polls"
    return (
        f"directory listing held: would delete {held.deleted} of {held.members} members"
        f" ({polls}, since {_time(held.since)})"
    )


def _callback_state(tenant: TenantStatus, cb: CallbackStatus) -> tuple[str, str]:
    """An api2 tenant: when its last callback came, or which refusals it keeps getting;
    a directory listing held for its deletions (amber unless it refuses callbacks)."""
    if tenant.state == "refusing":
        label = f"refusing callbacks ({cb.refused_in_a_row} in a row): {cb.last_refused}"
    elif cb.last_at is None:
        label = "by callback, none yet"
    else:
        label = f"by callback, last {_time(cb.last_at)}"
    directory = tenant.directory
    if isinstance(directory, DirectoryPollStatus) and directory.held is not None:
        css = "held" if tenant.state == "callback" else tenant.state
        return css, f"{label}; {held_label(directory.held)}"
    return tenant.state, label


def tenant_state(tenant: TenantStatus) -> tuple[str, str]:
    """(css class, label) of a tenant, with the reason when it is not connected."""
    if tenant.callbacks is not None:
        return _callback_state(tenant, tenant.callbacks)
    label = _TENANT_LABEL.get(tenant.state, tenant.state)
    if tenant.state in ("backoff", "failed") and tenant.last_error:
        label += f": {tenant.last_error}"
    pending = tenant.directory_pending
    if pending is not None:  # the mail goes on; the directory change waits
        label += f"; directory change to Ver {pending.target} pending ({pending.attempts} tries)"
        if pending.last_error:
            label += f": {pending.last_error}"
    return tenant.state, label


def sink_state(sink: SinkStatus) -> tuple[str, str]:
    """(css class, label) of a sink: connected, disabled (why), blocked by a resource
    alarm of RabbitMQ (why, since when) or down (why)."""
    if sink.disabled:
        return "disabled", f"disabled: {sink.disabled}"
    if sink.connected and sink.blocked:
        why, since = sink.blocked["reason"], _time(float(sink.blocked["since"]))
        return "blocked", f"blocked by RabbitMQ: {why} (resource alarm) since {since}"
    if sink.connected:
        return "connected", "connected"
    return "down", f"not connected: {sink.last_error or 'connecting'}"


def _cell(key: str, text: str, css: str = "") -> str:
    klass = f' class="{html.escape(css)}"' if css else ""
    return f'<td data-k="{key}"{klass}>{html.escape(text)}</td>'


def deadletters_link(sink: str) -> str:
    """Where a sink's dead letters are listed (the admin API, behind its own token)."""
    return f"{DEADLETTERS_PATH}?sink={quote(sink, safe='')}"


def _dead_cell(sink: str, dead: int) -> str:
    href = html.escape(deadletters_link(sink))
    return f'<td data-k="dead" class="num"><a href="{href}">{dead}</a></td>'


def _tenant_row(t: TenantStatus) -> str:
    css, label = tenant_state(t)
    return (
        f'<tr data-tenant="{_e(t.name)}">'
        + _cell("name", t.name)
        + _cell("state", label, f"state {css}")
        + _cell("ver", DASH if t.ver is None else str(t.ver))
        + _cell("last_event_at", _time(t.last_event_at))
        + _cell("events_by_type", _by_type(t.events_by_type))
        + _cell("last_error", t.last_error or DASH)
        + _cell("last_error_at", _time(t.last_error_at))
        + "</tr>"
    )


def _sink_row(s: SinkStatus) -> str:
    css, label = sink_state(s)
    return (
        f'<tr data-sink="{_e(s.name)}">'
        + _cell("name", s.name)
        + _cell("state", label, f"state {css}")
        + _cell("backlog", str(s.backlog), "num")
        + _cell("oldest_pending_age", _age(s.oldest_pending_age), "num")
        + _cell("delivered", str(s.delivered), "num")
        + _cell("failed", str(s.failed), "num")
        + _dead_cell(s.name, s.dead)
        + "</tr>"
    )


def _orphan_row(o: OrphanStatus) -> str:
    return (
        f'<tr data-orphan="{_e(o.name)}">'
        + _cell("name", o.name)
        + _dead_cell(o.name, o.dead)
        + _cell("pending", str(o.pending), "num")
        + _cell("retired", str(o.retired), "num")
        + _cell("retired_at", _time(o.retired_at))
        + "</tr>"
    )


def _client_row(c: ClientStatus) -> str:
    return (
        f'<tr data-client="{_e(c.name)}">'
        + _cell("name", c.name)
        + _cell("tenants", ", ".join(c.tenants) or "all")
        + _cell("scopes", ", ".join(c.scopes) or DASH)
        + _cell("requests", str(c.requests), "num")
        + _cell("last_used_at", _time(c.last_used_at))
        + "</tr>"
    )


def _event_row(e: RecentEvent, show_subject: bool) -> str:
    cells = _cell("time", _time(e.time)) + _cell("tenant", e.tenant) + _cell("type", e.type)
    if show_subject:
        cells += _cell("subject", e.subject or DASH)
    return f"<tr>{cells}</tr>"


def _journal_text(j: JournalStatus) -> dict[str, str]:
    prune = j.last_prune
    return {
        "events": _e(j.events),
        "backlog": f"{_e(j.backlog_events)} / {_e(j.max_events)} events, "
        f"{_e(j.backlog_bytes)} / {_e(j.max_bytes)} bytes",
        "file_bytes": _e(j.file_bytes),
        "backpressure": _e(j.backpressure or "none"),
        "pruning": (
            f"keeps delivered events {_e(j.retention_seconds)} s; "
            + (
                "not pruned yet"
                if prune is None
                else f"last pruned {_time(prune.at)}, {_e(prune.events)} events"
            )
        ),
    }


_STYLE = """
:root{color-scheme:light dark}
body{font-family:system-ui,-apple-system,sans-serif;margin:0 auto;padding:.8rem;max-width:70rem;
line-height:1.35}
h1{font-size:1.3rem;margin:.2rem 0} h2{font-size:1.05rem;margin:1.2rem 0 .4rem}
.wrap{overflow-x:auto;-webkit-overflow-scrolling:touch}
table{border-collapse:collapse;width:100%;font-size:.88rem}
th,td{border-bottom:1px solid #8884;padding:.3rem .4rem;text-align:left;vertical-align:top}
th{font-weight:600;white-space:nowrap} td.num{text-align:right;font-variant-numeric:tabular-nums}
.state{font-weight:600} .connected,.callback{color:#0a7a2f} .failed,.down,.refusing{color:#c0262d}
.backoff,.paused,.starting,.waiting,.disabled,.held,.blocked{color:#b36b00} .stopped{color:#777}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem .8rem;margin:0;font-size:.9rem}
dt{font-weight:600} dd{margin:0} #stale{color:#c0262d}
#banner{padding:.4rem .6rem;border-radius:.3rem;margin:.4rem 0}
#banner.ok{background:#0a7a2f22} #banner.bad{background:#c0262d22}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(26rem,1fr));gap:.5rem 1rem}
figure{margin:0} figcaption{font-size:.85rem;font-weight:600}
h2 small{font-weight:400;font-size:.75rem;opacity:.75}
svg.chart{width:100%;height:auto;max-width:32rem;display:block}
#tenant-search{display:flex;gap:.4rem;margin:.2rem 0} #tenant-search input{flex:0 1 18rem}
#tenants-pager{margin:.4rem 0;font-size:.9rem} #tenants-pager a{margin-right:.8rem}
"""


def _sharding_line(s: ShardingStatus | None) -> str:
    """Who this replica is and which shards it runs (rendered at load; reload to update)."""
    if s is None:
        return ""
    if s.mode == "static":
        text = f"static sharding: shard {s.owned[0]} of {s.shards}"
    else:
        owned = ", ".join(map(str, s.owned)) or "none: standby"
        text = (
            f"lease mode: replica {_e(s.replica)} runs shards {owned} of {s.shards}; "
            f"live replicas: {_e(', '.join(s.live))}"
        )
        if (h := s.last_handoff) is not None:
            why = f" ({_e(h.reason)})" if h.reason else ""
            text += f"; last handoff: shard {h.shard} {h.kind}{why} at {_time(h.at)}"
        if s.last_error:
            text += f"; lease error: {_e(s.last_error)}"
        for conflict in s.conflicts[1:]:
            text += f"; conflict: {_e(conflict)}"
        if s.refused:
            counts = ", ".join(f"{n} {_e(reason)}" for reason, n in s.refused.items())
            text += f"; presence messages refused: {counts}"
        if s.unhealthy:
            text += f"; unhealthy, holds no shard: {_e(s.unhealthy)}"
        for link, block in s.blocked.items():
            text += f"; {_e(link)} blocked by RabbitMQ: {_e(str(block['reason']))}"
        if (c := s.checkpoints) is not None:
            text += f"; checkpoints: {'connected' if c.connected else 'not connected'}"
            if c.last_error:
                text += f" ({_e(c.last_error)})"
            for shard, why in c.waiting.items():
                text += f"; shard {_e(shard)} waits for its checkpoints: {_e(why)}"
            if c.refused or c.malformed:
                text += f"; checkpoint messages dropped: {c.refused + c.malformed}"
                if c.last_refused:
                    text += f" (last: {_e(c.last_refused)})"
    return f'<p id="sharding"><small>{text}</small></p>\n'


def tenants_summary(g: TenantsPage) -> str:
    """ "12 tenants; page 1 of 1 · all tenants: 1 failed, 11 connected" (as the script)."""
    text = f"{g.matched}" + (f" of {g.total} tenants match" if g.q else " tenants")
    text += f"; page {g.page} of {g.pages}"
    parts = [f"{n} {_TENANT_LABEL.get(state, state)}" for state, n in g.states.items()]
    return f"{text} \u00b7 all tenants: {', '.join(parts)}" if parts else text


def tenants_query(g: TenantsPage, page: int | None = None) -> str:
    """The query string of page ``page`` (default: this one) of the same search."""
    params: dict[str, object] = {"q": g.q} if g.q else {}
    params.update(page=g.page if page is None else page, per_page=g.per_page)
    return urlencode(params)


def _pager(g: TenantsPage) -> str:
    if g.pages <= 1 and g.page == 1:
        return ""
    links = [
        (label, target)
        for label, target, show in (
            ("« first", 1, g.page > 1),
            ("‹ previous", min(g.page - 1, g.pages), g.page > 1),
            ("next ›", g.page + 1, g.page < g.pages),
            ("last »", g.pages, g.page < g.pages),
        )
        if show
    ]
    anchors = " ".join(
        f'<a href="?{html.escape(tenants_query(g, target))}" rel="nofollow">{label}</a>'
        for label, target in links
    )
    return f'<nav id="tenants-pager">{anchors}</nav>'


def _tenants_section(status: Status) -> str:
    g = status.tenants_page
    rows = "".join(_tenant_row(t) for t in status.tenants)
    head = "<h2>Tenants</h2>"
    pager = ""
    if g is not None:
        per_page = f'<input type="hidden" name="per_page" value="{g.per_page}">'
        head += (
            '<form id="tenant-search" method="get"><input type="search" name="q" '
            f'value="{html.escape(g.q)}" placeholder="tenant name contains" maxlength="200" '
            f'aria-label="Search tenants">{per_page}<button type="submit">Search</button>'
            f'</form><p><small id="tenants-summary">{html.escape(tenants_summary(g))}'
            "</small></p>"
        )
        pager = _pager(g)
    return f"""{head}<div class="wrap"><table id="tenants"><thead>
<tr><th>Tenant</th><th>State</th><th>Ver</th><th>Last event</th><th>Events by type</th>
<th>Last error</th><th>Error at</th></tr></thead>
<tbody id="tenants-body">{rows}</tbody></table></div>{pager}
"""


def _banner(status: Status) -> tuple[str, str]:
    g = status.tenants_page
    failed = (
        any(g.states.get(state, 0) > 0 for state in FAILING_STATES)
        if g is not None
        else any(t.state in FAILING_STATES for t in status.tenants)
    )
    bad = (
        status.stopping
        or failed
        or any(not s.connected or s.disabled or s.blocked for s in status.sinks)
        or bool(status.journal.backpressure)
    )
    if status.stopping:
        return "bad", "Shutting down"
    return ("bad", "Degraded") if bad else ("ok", "All parts healthy")


def render_status_page(
    status: Status, *, charts: str = "", refresh_seconds: int = REFRESH_SECONDS
) -> str:
    """The whole page for one ``status`` and the ``charts`` section (HTML from
    :func:`relay.ops.page_charts.render_charts`); same input, same output."""
    show_subject = status.show_content or any(e.subject is not None for e in status.recent_events)
    sink_rows = "".join(_sink_row(s) for s in status.sinks)
    event_rows = "".join(_event_row(e, show_subject) for e in status.recent_events)
    orphan_rows = "".join(_orphan_row(o) for o in status.orphans)
    orphans_hidden = "" if status.orphans else " hidden"
    client_rows = "".join(_client_row(c) for c in status.clients)
    clients_hidden = "" if status.clients else " hidden"
    journal = _journal_text(status.journal)
    banner_css, banner_text = _banner(status)
    subject_head = '<th id="events-subject">Subject</th>' if show_subject else ""
    script = SCRIPT.replace("REFRESH_MS", str(int(refresh_seconds * 1000)))
    g = status.tenants_page
    query = f' data-tenants-query="{html.escape(tenants_query(g))}"' if g is not None else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>exmail-relay status</title>
<style>{_STYLE}</style></head><body data-refreshed="{_e(status.now)}"{query}>
<h1>exmail-relay</h1>
<div id="banner" class="{banner_css}">{banner_text}</div>
<p><small id="generated">Updated {_time(status.now)}</small>
<small>&middot; up since {_time(status.started_at)}</small> <small id="stale"></small></p>
{_sharding_line(status.sharding)}{charts}<h2>Sinks</h2><div class="wrap"><table id="sinks">
<thead><tr><th>Sink</th><th>State</th><th>Backlog</th><th>Oldest pending</th>
<th>Delivered</th><th>Failed</th><th>Dead letters</th></tr></thead>
<tbody id="sinks-body">{sink_rows}</tbody></table></div>
{_tenants_section(status)}<section id="orphans"{orphans_hidden}><h2>Sinks no longer configured</h2>
<p><small>Their pending deliveries were retired to dead letters at start, out of the
backlog: <code>exmail-relay deadletters list|replay|drop --sink NAME</code>.</small></p>
<div class="wrap"><table><thead>
<tr><th>Sink</th><th>Dead letters</th><th>Pending</th><th>Retired at start</th>
<th>Retired at</th></tr></thead>
<tbody id="orphans-body">{orphan_rows}</tbody></table></div></section>
<section id="clients"{clients_hidden}><h2>API clients</h2><div class="wrap"><table><thead>
<tr><th>Client</th><th>Tenants</th><th>Scopes</th><th>Calls</th><th>Last used</th></tr>
</thead><tbody id="clients-body">{client_rows}</tbody></table></div></section>
<h2>Journal</h2><dl id="journal">
<dt>Stored events</dt><dd id="j-events">{journal["events"]}</dd>
<dt>Backlog / bound</dt><dd id="j-backlog">{journal["backlog"]}</dd>
<dt>File size (bytes)</dt><dd id="j-file_bytes">{journal["file_bytes"]}</dd>
<dt>Backpressure</dt><dd id="j-backpressure">{journal["backpressure"]}</dd>
<dt>Pruning</dt><dd id="j-pruning">{journal["pruning"]}</dd>
</dl>
<h2>Latest events</h2><div class="wrap"><table id="events"><thead>
<tr><th>Time</th><th>Tenant</th><th>Type</th>{subject_head}</tr></thead>
<tbody id="events-body">{event_rows}</tbody></table></div>
<script>{script}</script>
</body></html>
"""
