"""The status page's charts of the last hour, from the sampled :class:`History`.

Pure: :func:`build_charts` picks the series (events in and out per minute, backlog per
sink, delivery latency p50 and p99 over each minute, listen failures per minute) and
:func:`render_charts` draws them as inline SVG (:mod:`relay.ops.charts`).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import UTC, datetime

from relay.ops.charts import PALETTE, Chart, Line, render_chart
from relay.ops.history import Sample, gauge_series, latency_series, rate_series

__all__ = ["MAX_SINK_LINES", "build_charts", "render_charts"]

MAX_SINK_LINES = 6


def _backlog_lines(samples: Sequence[Sample]) -> tuple[list[Line], str]:
    """One line per sink, the biggest backlogs first; the rest counted in a note."""
    peak: dict[str, float] = {}
    for sample in samples:
        for sink, value in sample.backlog.items():
            peak[sink] = max(peak.get(sink, 0.0), value)
    ranked = sorted(peak, key=lambda sink: (-peak[sink], sink))
    shown = ranked[:MAX_SINK_LINES]
    lines = [
        Line(sink, gauge_series(samples, sink), PALETTE[i % len(PALETTE)])
        for i, sink in enumerate(shown)
    ]
    hidden = len(ranked) - len(shown)
    return lines, f"+{hidden} more sinks (smaller)" if hidden else ""


def build_charts(samples: Sequence[Sample]) -> list[Chart]:
    backlog, note = _backlog_lines(samples)
    return [
        Chart(
            "events",
            "Events in and out per minute",
            "/min",
            [
                Line("in", rate_series(samples, lambda s: s.events_in), PALETTE[0]),
                Line("out", rate_series(samples, lambda s: s.events_out), PALETTE[2]),
            ],
        ),
        Chart("backlog", "Backlog per sink (pending deliveries)", "", backlog, note),
        Chart(
            "latency",
            "Delivery latency (p50, p99 over the minute before)",
            "s",
            [
                Line("p50", latency_series(samples, 0.5), PALETTE[0]),
                Line("p99", latency_series(samples, 0.99), PALETTE[1]),
            ],
        ),
        Chart(
            "listen-failures",
            "Listen failures per minute (all tenants)",
            "/min",
            [Line("failures", rate_series(samples, lambda s: s.listen_failures), PALETTE[3])],
        ),
    ]


def render_charts(
    samples: Sequence[Sample], *, now: float, span: float, error: str | None = None
) -> str:
    """The charts section: four figures over ``[now - span, now]``, and the sampler's
    last error when it has one."""
    start = now - span
    figures = "".join(
        f"<figure><figcaption>{html.escape(chart.title)}</figcaption>"
        f"{render_chart(chart, start=start, end=now)}</figure>"
        for chart in build_charts(samples)
    )
    trouble = (
        f'<p class="failed" id="charts-error">sampling failed: {html.escape(error)}</p>'
        if error
        else ""
    )
    window = f"{round(span / 60)} minutes" if span >= 120 else f"{round(span)} seconds"
    drawn = datetime.fromtimestamp(now, UTC).strftime("%H:%M:%S UTC")
    return (
        f'<section id="charts"><h2>Last {window} <small id="charts-drawn">drawn {drawn};'
        f" reload for newer points</small></h2>{trouble}"
        f'<div class="charts">{figures}</div></section>\n'
    )
