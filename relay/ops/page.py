"""The status page: one self-contained HTML document, rendered on the server.

Pure: ``render_status_page(status) -> str`` turns a typed
:class:`relay.runtime.status.Status` into HTML. No external assets, no build step.
The first paint is complete without JavaScript; a small inline script then fetches
``status.json`` (that same ``Status``, as JSON) every few seconds and rewrites the figures
in place (text nodes only, never ``innerHTML``, so nothing from the data can become
markup). The script and the Python below format each cell the same way, so a refresh
changes only what changed.

The status dataclasses are the one place the JSON field names live. The Python side
reads them as attributes (mypy checks each one); the script writes each read of the data
as ``var.$field``, and :func:`_bind_fields` checks, when this module is imported, that
``field`` is a field of the dataclass that ``var`` holds (``s`` the status, ``t`` a tenant,
``k`` a sink, ``e`` an event, ``j`` the journal, ``p`` its last prune, ``o`` a sink no
longer configured) before it writes
the plain ``var.field``. A script that reads a key the JSON does not have cannot load.

The page shows only what ``status()`` hands it: no secrets are in the status, and event
subjects are present only when ``[status] show_content`` is on.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from datetime import UTC, datetime

from relay.runtime.status import (
    ClientStatus,
    JournalStatus,
    OrphanStatus,
    PruneStatus,
    RecentEvent,
    ShardingStatus,
    SinkStatus,
    Status,
    TenantStatus,
)

__all__ = ["REFRESH_SECONDS", "SCRIPT_READS", "render_status_page", "sink_state", "tenant_state"]

REFRESH_SECONDS = 5

DASH = "–"


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
}


def tenant_state(tenant: TenantStatus) -> tuple[str, str]:
    """(css class, label) of a tenant, with the reason when it is not connected."""
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
    """(css class, label) of a sink: connected, disabled (why) or down (why)."""
    if sink.disabled:
        return "disabled", f"disabled: {sink.disabled}"
    if sink.connected:
        return "connected", "connected"
    return "down", f"not connected: {sink.last_error or 'connecting'}"


def _cell(key: str, text: str, css: str = "") -> str:
    klass = f' class="{html.escape(css)}"' if css else ""
    return f'<td data-k="{key}"{klass}>{html.escape(text)}</td>'


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
        + _cell("dead", str(s.dead), "num")
        + "</tr>"
    )


def _orphan_row(o: OrphanStatus) -> str:
    return (
        f'<tr data-orphan="{_e(o.name)}">'
        + _cell("name", o.name)
        + _cell("dead", str(o.dead), "num")
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
.state{font-weight:600} .connected{color:#0a7a2f} .failed,.down{color:#c0262d}
.backoff,.paused,.starting,.waiting,.disabled{color:#b36b00} .stopped{color:#777}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem .8rem;margin:0;font-size:.9rem}
dt{font-weight:600} dd{margin:0} #stale{color:#c0262d}
#banner{padding:.4rem .6rem;border-radius:.3rem;margin:.4rem 0}
#banner.ok{background:#0a7a2f22} #banner.bad{background:#c0262d22}
"""

# Kept in step with the Python formatters above; textContent only, never innerHTML.
# Every read of the data is written ``var.$field`` (see the module docstring).
_SCRIPT_TEMPLATE = """
(function () {
  var DASH = "\\u2013";
  var LABEL = {connected: "connected", backoff: "backing off", failed: "failed",
    paused: "paused (backpressure)", starting: "starting", stopped: "stopped",
    waiting: "waiting for its turn (takeover_rate)"};
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function time(v) {
    if (typeof v !== "number") return DASH;
    var d = new Date(v * 1000);
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) +
      " " + pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" +
      pad(d.getUTCSeconds()) + " UTC";
  }
  function txt(v) { return v === null || v === undefined || v === "" ? DASH : String(v); }
  function age(v) { return typeof v === "number" ? v.toFixed(1) + " s" : DASH; }
  function byType(counts) {
    var types = Object.keys(counts || {}).sort();
    if (!types.length) return DASH;
    return types.map(function (type) {
      return type.replace(/^exmail\\./, "") + " " + counts[type];
    }).join(", ");
  }
  function tenantState(t) {
    var l = LABEL[t.$state] || t.$state;
    if ((t.$state === "backoff" || t.$state === "failed") && t.$last_error) {
      l += ": " + t.$last_error;
    }
    var d = t.$directory_pending;
    if (d) {
      l += "; directory change to Ver " + d.target + " pending (" + d.attempts + " tries)";
      if (d.last_error) l += ": " + d.last_error;
    }
    return [t.$state, l];
  }
  function sinkState(k) {
    if (k.$disabled) return ["disabled", "disabled: " + k.$disabled];
    if (k.$connected) return ["connected", "connected"];
    return ["down", "not connected: " + (k.$last_error || "connecting")];
  }
  function cell(tr, key, text, css) {
    var td = document.createElement("td");
    td.setAttribute("data-k", key);
    if (css) td.className = css;
    td.textContent = text;
    tr.appendChild(td);
  }
  function fill(id, items, build) {
    var body = document.getElementById(id);
    var rows = items.map(build);
    while (body.firstChild) body.removeChild(body.firstChild);
    rows.forEach(function (r) { body.appendChild(r); });
  }
  function set(id, text) { var n = document.getElementById(id); if (n) n.textContent = text; }
  function render(s) {
    fill("tenants-body", s.$tenants, function (t) {
      var tr = document.createElement("tr"); tr.setAttribute("data-tenant", t.$name);
      var st = tenantState(t);
      cell(tr, "name", t.$name); cell(tr, "state", st[1], "state " + st[0]);
      cell(tr, "ver", txt(t.$ver)); cell(tr, "last_event_at", time(t.$last_event_at));
      cell(tr, "events_by_type", byType(t.$events_by_type));
      cell(tr, "last_error", txt(t.$last_error));
      cell(tr, "last_error_at", time(t.$last_error_at));
      return tr;
    });
    fill("sinks-body", s.$sinks, function (k) {
      var tr = document.createElement("tr"); tr.setAttribute("data-sink", k.$name);
      var st = sinkState(k);
      cell(tr, "name", k.$name); cell(tr, "state", st[1], "state " + st[0]);
      cell(tr, "backlog", String(k.$backlog || 0), "num");
      cell(tr, "oldest_pending_age", age(k.$oldest_pending_age), "num");
      cell(tr, "delivered", String(k.$delivered || 0), "num");
      cell(tr, "failed", String(k.$failed || 0), "num");
      cell(tr, "dead", String(k.$dead || 0), "num");
      return tr;
    });
    fill("orphans-body", s.$orphans, function (o) {
      var tr = document.createElement("tr"); tr.setAttribute("data-orphan", o.$name);
      cell(tr, "name", o.$name); cell(tr, "dead", String(o.$dead || 0), "num");
      cell(tr, "pending", String(o.$pending || 0), "num");
      cell(tr, "retired", String(o.$retired || 0), "num");
      cell(tr, "retired_at", time(o.$retired_at));
      return tr;
    });
    document.getElementById("orphans").hidden = !s.$orphans.length;
    fill("clients-body", s.$clients, function (c) {
      var tr = document.createElement("tr"); tr.setAttribute("data-client", c.$name);
      cell(tr, "name", c.$name); cell(tr, "tenants", c.$tenants.join(", ") || "all");
      cell(tr, "scopes", c.$scopes.join(", ") || DASH);
      cell(tr, "requests", String(c.$requests || 0), "num");
      cell(tr, "last_used_at", time(c.$last_used_at));
      return tr;
    });
    document.getElementById("clients").hidden = !s.$clients.length;
    var showSubject = !!document.getElementById("events-subject");
    fill("events-body", s.$recent_events, function (e) {
      var tr = document.createElement("tr");
      cell(tr, "time", time(e.$time)); cell(tr, "tenant", txt(e.$tenant));
      cell(tr, "type", txt(e.$type));
      if (showSubject) cell(tr, "subject", txt(e.$subject));
      return tr;
    });
    var j = s.$journal, p = j.$last_prune;
    set("j-events", txt(j.$events));
    set("j-backlog", txt(j.$backlog_events) + " / " + txt(j.$max_events) + " events, " +
      txt(j.$backlog_bytes) + " / " + txt(j.$max_bytes) + " bytes");
    set("j-file_bytes", txt(j.$file_bytes));
    set("j-backpressure", j.$backpressure || "none");
    set("j-pruning", "keeps delivered events " + txt(j.$retention_seconds) + " s; " +
      (p ? "last pruned " + time(p.$at) + ", " + txt(p.$events) + " events" : "not pruned yet"));
    set("generated", "Updated " + time(s.$now));
    var bad = s.$stopping || s.$tenants.some(function (t) { return t.$state === "failed"; }) ||
      s.$sinks.some(function (k) { return !k.$connected || k.$disabled; }) || !!j.$backpressure;
    var b = document.getElementById("banner");
    b.className = bad ? "bad" : "ok";
    b.textContent = s.$stopping ? "Shutting down" : (bad ? "Degraded" : "All parts healthy");
    set("stale", "");
    document.body.setAttribute("data-refreshed", String(s.$now));
  }
  function tick() {
    fetch("status.json", {cache: "no-store", credentials: "same-origin"})
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(render)
      .catch(function (err) {
        set("stale", "refresh failed (" + err.message + "); figures may be old");
      });
  }
  tick();
  setInterval(tick, REFRESH_MS);
})();
"""


# Which status dataclass each one-letter variable of the script holds; the script uses
# these letters for nothing else.
_Record = (
    Status
    | TenantStatus
    | SinkStatus
    | RecentEvent
    | JournalStatus
    | PruneStatus
    | OrphanStatus
    | ClientStatus
)
_SCRIPT_VARS: Mapping[str, type[_Record]] = {
    "s": Status,
    "t": TenantStatus,
    "k": SinkStatus,
    "e": RecentEvent,
    "j": JournalStatus,
    "p": PruneStatus,
    "o": OrphanStatus,
    "c": ClientStatus,
}
_MEMBER = re.compile(r"(?<![\w.$])([A-Za-z_]\w*)\.(\$?)(\w+)")


def _bind_fields(template: str) -> tuple[str, frozenset[tuple[str, str]]]:
    """The script with each ``var.$field`` checked and written ``var.field``, and the
    (record, field) pairs it reads. Raises ValueError for a field the record lacks, a
    ``$`` on a variable that holds no record, or a record read without its ``$``."""
    reads: set[tuple[str, str]] = set()

    def bind(match: re.Match[str]) -> str:
        var, marked, name = match.groups()
        record = _SCRIPT_VARS.get(var)
        if record is None and not marked:
            return match.group(0)
        if record is None:
            raise ValueError(f"status page script: {var}.${name}: {var} holds no record")
        if not marked:
            raise ValueError(f"status page script: write {var}.{name} as {var}.${name}")
        if name not in record.json_keys():
            raise ValueError(f"status page script reads {record.__name__}.{name}: no such field")
        reads.add((record.__name__, name))
        return f"{var}.{name}"

    script = _MEMBER.sub(bind, template)
    if "$" in script:
        raise ValueError("status page script: a $ that is not a field read")
    return script, frozenset(reads)


_SCRIPT, SCRIPT_READS = _bind_fields(_SCRIPT_TEMPLATE)


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


def _banner(status: Status) -> tuple[str, str]:
    bad = (
        status.stopping
        or any(t.state == "failed" for t in status.tenants)
        or any(not s.connected or s.disabled for s in status.sinks)
        or bool(status.journal.backpressure)
    )
    if status.stopping:
        return "bad", "Shutting down"
    return ("bad", "Degraded") if bad else ("ok", "All parts healthy")


def render_status_page(status: Status, *, refresh_seconds: int = REFRESH_SECONDS) -> str:
    """The whole page for one ``status``; same input, same output."""
    show_subject = status.show_content or any(e.subject is not None for e in status.recent_events)
    tenant_rows = "".join(_tenant_row(t) for t in status.tenants)
    sink_rows = "".join(_sink_row(s) for s in status.sinks)
    event_rows = "".join(_event_row(e, show_subject) for e in status.recent_events)
    orphan_rows = "".join(_orphan_row(o) for o in status.orphans)
    orphans_hidden = "" if status.orphans else " hidden"
    client_rows = "".join(_client_row(c) for c in status.clients)
    clients_hidden = "" if status.clients else " hidden"
    journal = _journal_text(status.journal)
    banner_css, banner_text = _banner(status)
    subject_head = '<th id="events-subject">Subject</th>' if show_subject else ""
    script = _SCRIPT.replace("REFRESH_MS", str(int(refresh_seconds * 1000)))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>exmail-relay status</title>
<style>{_STYLE}</style></head><body data-refreshed="{_e(status.now)}">
<h1>exmail-relay</h1>
<div id="banner" class="{banner_css}">{banner_text}</div>
<p><small id="generated">Updated {_time(status.now)}</small>
<small>&middot; up since {_time(status.started_at)}</small> <small id="stale"></small></p>
{_sharding_line(status.sharding)}<h2>Tenants</h2><div class="wrap"><table id="tenants"><thead>
<tr><th>Tenant</th><th>State</th><th>Ver</th><th>Last event</th><th>Events by type</th>
<th>Last error</th><th>Error at</th></tr></thead>
<tbody id="tenants-body">{tenant_rows}</tbody></table></div>
<h2>Sinks</h2><div class="wrap"><table id="sinks"><thead>
<tr><th>Sink</th><th>State</th><th>Backlog</th><th>Oldest pending</th><th>Delivered</th>
<th>Failed</th><th>Dead letters</th></tr></thead>
<tbody id="sinks-body">{sink_rows}</tbody></table></div>
<section id="orphans"{orphans_hidden}><h2>Sinks no longer configured</h2>
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
