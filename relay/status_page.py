"""The status page: one self-contained HTML document, rendered on the server.

Pure: ``render_status_page(status) -> str``. No external assets, no build step. The
first paint is complete without JavaScript; a small inline script refreshes the page's
figures from ``/status.json`` every few seconds.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any

__all__ = ["render_status_page"]


def _time(stamp: object) -> str:
    if not isinstance(stamp, int | float):
        return "–"
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _e(value: object) -> str:
    return html.escape("–" if value is None else str(value))


def render_status_page(status: dict[str, Any]) -> str:
    tenant_rows = "".join(
        f'<tr data-tenant="{_e(t["name"])}"><td>{_e(t["name"])}</td>'
        f'<td class="state {_e(t["state"])}">{_e(t["state"])}</td><td>{_e(t["ver"])}</td>'
        f"<td>{_time(t['last_event_at'])}</td>"
        f"<td>{_e(sum(t['events_by_type'].values()))}</td><td>{_e(t['last_error'])}</td></tr>"
        for t in status["tenants"]
    )
    sink_rows = "".join(
        f'<tr data-sink="{_e(s["name"])}"><td>{_e(s["name"])}</td>'
        f"<td>{'disabled' if s['disabled'] else ('connected' if s['connected'] else 'down')}</td>"
        f'<td class="backlog">{_e(s["backlog"])}</td><td>{_e(s["oldest_pending_age"])}</td>'
        f"<td>{_e(s['delivered'])}</td><td>{_e(s['dead'])}</td><td>{_e(s['last_error'])}</td></tr>"
        for s in status["sinks"]
    )
    journal = status["journal"]
    event_rows = "".join(
        f"<tr><td>{_time(e['time'])}</td><td>{_e(e['tenant'])}</td><td>{_e(e['type'])}</td></tr>"
        for e in status["recent_events"]
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>exmail-relay status</title>
<style>
body{{font-family:system-ui,sans-serif;margin:1rem;color:#222}}
table{{border-collapse:collapse;width:100%;margin-bottom:1.5rem;font-size:.9rem}}
th,td{{border-bottom:1px solid #ddd;padding:.3rem;text-align:left;vertical-align:top}}
.failed,.down{{color:#b00}} .backoff,.paused{{color:#a60}} .connected{{color:#070}}
.wrap{{overflow-x:auto}}
</style></head><body>
<h1>exmail-relay</h1>
<p id="generated">Updated {_time(status["now"])}</p>
<h2>Tenants</h2><div class="wrap"><table id="tenants">
<tr><th>Tenant</th><th>State</th><th>Ver</th><th>Last event</th><th>Events</th>
<th>Last error</th></tr>
{tenant_rows}</table></div>
<h2>Sinks</h2><div class="wrap"><table id="sinks">
<tr><th>Sink</th><th>State</th><th>Backlog</th><th>Oldest pending (s)</th><th>Delivered</th>
<th>Dead letters</th><th>Last error</th></tr>
{sink_rows}</table></div>
<h2>Journal</h2><p id="journal">Backlog {_e(journal["backlog_events"])} of
{_e(journal["max_events"])} events, {_e(journal["file_bytes"])} bytes on disk;
backpressure: {_e(journal["backpressure"] or "none")}.</p>
<h2>Latest events</h2><div class="wrap"><table id="events">
<tr><th>Time</th><th>Tenant</th><th>Type</th></tr>{event_rows}</table></div>
<script>
setInterval(async () => {{
  try {{
    const r = await fetch("status.json", {{cache: "no-store"}});
    if (r.ok) {{ location.reload(); }}
  }} catch (e) {{}}
}}, 5000);
</script>
</body></html>
"""
