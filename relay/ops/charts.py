"""Line charts as inline SVG, drawn on the server: no script, no font, no external file.

Pure: :func:`render_chart` turns a :class:`Chart` (lines of ``(time, value)`` points,
``None`` a gap) into one ``<svg>`` element for the window ``[start, end]``: a y axis from
0 in round steps (1, 2, 2.5 or 5 times a power of ten) with its values, a time axis in
UTC (HH:MM; HH:MM:SS for a window under 10 minutes), one polyline per line, and a
legend with each line's latest value. A chart with no value at all says "no data yet".
Every text that comes from the data (a sink's name) is escaped; colours are fixed
attributes, and text and axes use ``currentColor`` so the page's light or dark scheme
applies.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from relay.ops.history import Point

__all__ = ["PALETTE", "Chart", "Line", "format_value", "nice_ceiling", "render_chart"]

WIDTH, HEIGHT = 480, 210
LEFT, RIGHT, TOP, BOTTOM = 58, 12, 30, 26  # plot margins
PALETTE = ("#2f6fdf", "#e8772e", "#1a9e55", "#c0262d", "#8b4fd1", "#8a6d00", "#0f8a9e", "#777")
FONT = 'font-family="system-ui,sans-serif" font-size="11"'


@dataclass(frozen=True, slots=True)
class Line:
    label: str
    points: Sequence[Point]
    color: str = PALETTE[0]


@dataclass(frozen=True, slots=True)
class Chart:
    """``unit``: ``"/min"`` (a rate), ``"s"`` (seconds) or ``""`` (a count)."""

    key: str
    title: str
    unit: str
    lines: Sequence[Line]
    note: str = ""


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is >= ``value`` (> 0)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if value <= step * power * (1 + 1e-9):
            return step * power
    return 10.0 * power  # pragma: no cover (the loop ends at 10)


def _number(value: float) -> str:
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    if value == int(value):
        return str(int(value))
    return f"{value:.3g}"


def format_value(value: float | None, unit: str) -> str:
    """A figure as the axis and legend show it: ``12/min``, ``250 ms``, ``1.5 s``, ``3k``."""
    if value is None:
        return "–"
    if unit == "s":
        if value == 0:
            return "0 s"
        if value < 1:
            return f"{_number(round(value * 1000, 3))} ms"
        return f"{_number(round(value, 3))} s"
    return _number(round(value, 2)) + unit


def _clock(stamp: float, seconds: bool) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%H:%M:%S" if seconds else "%H:%M")


def _segments(points: Sequence[Point]) -> list[list[tuple[float, float]]]:
    """The runs of points between gaps."""
    runs: list[list[tuple[float, float]]] = [[]]
    for at, value in points:
        if value is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((at, value))
    return [run for run in runs if run]


def _latest(points: Sequence[Point]) -> float | None:
    return next((v for _, v in reversed(points) if v is not None), None)


def render_chart(chart: Chart, *, start: float, end: float) -> str:
    """One ``<svg>`` for ``chart`` over ``[start, end]`` (wall-clock seconds)."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    span = max(end - start, 1e-9)
    values = [v for line in chart.lines for at, v in line.points if v is not None and at >= start]
    step = nice_ceiling(max(values, default=0.0) / 4)
    ticks = max(1, math.ceil(max(values, default=0.0) / step - 1e-9))
    top = step * ticks
    axis_unit = "" if chart.unit == "/min" else chart.unit  # the rate's unit is in the title
    title = html.escape(chart.title)
    parts = [
        f'<svg class="chart" id="chart-{html.escape(chart.key)}" viewBox="0 0 {WIDTH} {HEIGHT}"'
        f' width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{title}"'
        ' xmlns="http://www.w3.org/2000/svg">',
        f"<title>{title}</title>",
        f'<g {FONT} fill="currentColor">',
    ]

    def x(at: float) -> float:
        return LEFT + plot_w * (at - start) / span

    def y(value: float) -> float:
        return TOP + plot_h * (1 - value / top)

    for i in range(ticks + 1):  # y grid and values: 0, a round step, ... top
        value = step * i
        py = y(value)
        parts.append(
            f'<line x1="{LEFT}" y1="{py:.1f}" x2="{WIDTH - RIGHT}" y2="{py:.1f}" '
            f'stroke="currentColor" stroke-opacity="{0.5 if i == 0 else 0.15}"/>'
            f'<text x="{LEFT - 5}" y="{py + 4:.1f}" text-anchor="end">'
            f"{html.escape(format_value(value, axis_unit))}</text>"
        )
    for i in range(5):  # time axis: start, every quarter, end
        at = start + span * i / 4
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        parts.append(
            f'<text x="{x(at):.1f}" y="{HEIGHT - 8}" text-anchor="{anchor}">'
            f"{_clock(at, span < 600)}{' UTC' if i == 4 else ''}</text>"
        )
    legend_x = float(LEFT)
    for line in chart.lines:
        label = f"{line.label} {format_value(_latest(line.points), chart.unit)}"
        parts.append(
            f'<rect x="{legend_x:.0f}" y="9" width="10" height="10" fill="{line.color}"/>'
            f'<text x="{legend_x + 14:.0f}" y="18">{html.escape(label)}</text>'
        )
        legend_x += 24 + 6.2 * len(label)
    if chart.note:
        parts.append(
            f'<text x="{WIDTH - RIGHT}" y="18" text-anchor="end" fill-opacity="0.7">'
            f"{html.escape(chart.note)}</text>"
        )
    if not values:
        parts.append(
            f'<text class="empty" x="{LEFT + plot_w / 2:.0f}" y="{TOP + plot_h / 2:.0f}" '
            'text-anchor="middle" font-size="14" fill-opacity="0.7">no data yet</text>'
        )
    parts.append("</g>")
    for line in chart.lines:
        for run in _segments([(at, v) for at, v in line.points if at >= start]):
            coords = " ".join(f"{x(at):.1f},{y(v):.1f}" for at, v in run)
            if len(run) == 1:
                cx, cy = coords.split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{line.color}"/>')
            else:
                parts.append(
                    f'<polyline points="{coords}" fill="none" stroke="{line.color}" '
                    'stroke-width="1.6" stroke-linejoin="round"/>'
                )
    parts.append("</svg>")
    return "".join(parts)
