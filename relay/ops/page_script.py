"""The status page's inline script: it refreshes the figures from ``status.json``.

Kept in step with the Python formatters of :mod:`relay.ops.page` (the same text for each
cell, so a refresh changes only what changed); it writes text nodes only, never
``innerHTML``, so nothing from the data can become markup. It asks ``status.json`` for the
page of tenants the page shows (``data-tenants-query`` on the body), so a refresh of a
relay with 10 000 tenants moves one page, not all of them.

The status dataclasses are the one place the JSON field names live: the script writes
each read of the data as ``var.$field``, and :func:`_bind_fields` checks, when this
module is imported, that ``field`` is a field of the dataclass that ``var`` holds (``s``
the status, ``t`` a tenant, ``k`` a sink, ``e`` an event, ``j`` the journal, ``p`` its last
prune, ``o`` a sink no longer configured, ``c`` an API client, ``g`` the tenants page,
``cb`` an api2 tenant's callbacks, ``y`` its directory polls, ``h`` a held listing)
before it writes the plain ``var.field``. A script that reads a key the JSON does not have
cannot load.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from relay.runtime.pollstate import DirectoryPollStatus, HeldStatus
from relay.runtime.status import (
    CallbackStatus,
    ClientStatus,
    JournalStatus,
    OrphanStatus,
    PruneStatus,
    RecentEvent,
    SinkStatus,
    Status,
    TenantsPage,
    TenantStatus,
)

__all__ = ["SCRIPT", "SCRIPT_READS"]

# Kept in step with relay.ops.page; textContent only, never innerHTML. Every read of the
# data is written ``var.$field`` (see the module docstring).
_SCRIPT_TEMPLATE = """
(function () {
  var DASH = "\\u2013";
  var LABEL = {connected: "connected", backoff: "backing off", failed: "failed",
    paused: "paused (backpressure)", starting: "starting", stopped: "stopped",
    refusing: "refusing callbacks", callback: "by callback",
    waiting: "waiting for its turn (takeover_rate)"};
  var FAILING = ["failed", "refusing"];
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
  function heldLabel(h) {
    var polls = h.$confirm_polls ? "poll " + h.$polls + " of " + h.$confirm_polls :
      "poll " + h.$polls + ", never confirmed by polls";
    return "directory listing held: would delete " + h.$deleted + " of " + h.$members +
      " members (" + polls + ", since " + time(h.$since) + ")";
  }
  function callbackLabel(t, cb) {
    if (t.$state === "refusing") {
      return "refusing callbacks (" + cb.$refused_in_a_row + " in a row): " + cb.$last_refused;
    }
    if (typeof cb.$last_at !== "number") return "by callback, none yet";
    return "by callback, last " + time(cb.$last_at);
  }
  function callbackState(t, cb) {
    var l = callbackLabel(t, cb), y = t.$directory, h = y ? y.$held : null;
    if (!h) return [t.$state, l];
    return [t.$state === "callback" ? "held" : t.$state, l + "; " + heldLabel(h)];
  }
  function tenantState(t) {
    if (t.$callbacks) return callbackState(t, t.$callbacks);
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
    if (k.$connected && k.$blocked) {
      return ["blocked", "blocked by RabbitMQ: " + k.$blocked.reason + " (resource alarm) since " +
        time(k.$blocked.since)];
    }
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
  function deadCell(tr, sink, dead) {
    var td = document.createElement("td"), a = document.createElement("a");
    td.setAttribute("data-k", "dead"); td.className = "num";
    a.href = "admin/v1/deadletters?sink=" + encodeURIComponent(sink);
    a.textContent = String(dead || 0);
    td.appendChild(a); tr.appendChild(td);
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
      deadCell(tr, k.$name, k.$dead);
      return tr;
    });
    fill("orphans-body", s.$orphans, function (o) {
      var tr = document.createElement("tr"); tr.setAttribute("data-orphan", o.$name);
      cell(tr, "name", o.$name); deadCell(tr, o.$name, o.$dead);
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
    var g = s.$tenants_page;
    if (g) set("tenants-summary", summary(g));
    var failed = FAILING.some(function (st) {
      return g ? (g.$states[st] || 0) > 0 :
        s.$tenants.some(function (t) { return t.$state === st; });
    });
    var bad = s.$stopping || failed ||
      s.$sinks.some(function (k) { return !k.$connected || k.$disabled || k.$blocked; }) ||
      !!j.$backpressure;
    var b = document.getElementById("banner");
    b.className = bad ? "bad" : "ok";
    b.textContent = s.$stopping ? "Shutting down" : (bad ? "Degraded" : "All parts healthy");
    set("stale", "");
    document.body.setAttribute("data-refreshed", String(s.$now));
  }
  function summary(g) {
    var parts = Object.keys(g.$states).map(function (st) {
      return g.$states[st] + " " + (LABEL[st] || st);
    });
    var text = g.$matched + (g.$q ? " of " + g.$total + " tenants match" : " tenants") +
      "; page " + g.$page + " of " + g.$pages;
    return parts.length ? text + " \u00b7 all tenants: " + parts.join(", ") : text;
  }
  var QUERY = document.body.getAttribute("data-tenants-query");
  function tick() {
    fetch("status.json" + (QUERY ? "?" + QUERY : ""),
      {cache: "no-store", credentials: "same-origin"})
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
    | TenantsPage
    | CallbackStatus
    | DirectoryPollStatus
    | HeldStatus
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
    "g": TenantsPage,
    "cb": CallbackStatus,
    "y": DirectoryPollStatus,
    "h": HeldStatus,
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


SCRIPT, SCRIPT_READS = _bind_fields(_SCRIPT_TEMPLATE)
