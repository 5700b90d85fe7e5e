"""A trace as an SVG waterfall, drawn from the spans the OTLP receiver decoded.

docs/images/trace.svg is one of these (tests/tracing/test_tracing_e2e.py draws it).
Rows are spans in tree order (a child under its parent, siblings by start time), bars
are placed on one time axis from the trace's first start to its last end.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Protocol

WIDTH = 1000
LABEL = 300  # the name column
ROW = 34
TOP = 64
COLORS = {1: "#7f8c8d", 4: "#2e86c1", 5: "#27ae60"}  # INTERNAL, PRODUCER, CONSUMER
KINDS = {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
SHOWN = (
    "exmail.tenant",
    "exmail.listen.messages",
    "exmail.events",
    "exmail.events.new",
    "exmail.delivery.attempt",
    "exmail.delivery.outcome",
)


class Span(Protocol):
    @property
    def trace_id(self) -> str: ...
    @property
    def span_id(self) -> str: ...
    @property
    def parent_span_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> int: ...
    @property
    def start_ns(self) -> int: ...
    @property
    def end_ns(self) -> int: ...
    @property
    def attributes(self) -> dict[str, object]: ...


def tree_order(spans: Sequence[Span]) -> list[tuple[int, Span]]:
    """(depth, span) with every child right under its parent."""
    ids = {s.span_id for s in spans}
    children: dict[str, list[Span]] = {}
    for s in spans:
        parent = s.parent_span_id if s.parent_span_id in ids else ""
        children.setdefault(parent, []).append(s)
    ordered: list[tuple[int, Span]] = []

    def visit(parent: str, depth: int) -> None:
        for s in sorted(children.get(parent, []), key=lambda s: s.start_ns):
            ordered.append((depth, s))
            visit(s.span_id, depth + 1)

    visit("", 0)
    return ordered


def waterfall_svg(spans: Sequence[Span], title: str = "") -> str:
    rows = tree_order(spans)
    start = min(s.start_ns for s in spans)
    total = max(max(s.end_ns for s in spans) - start, 1)
    area = WIDTH - LABEL - 40
    height = TOP + ROW * len(rows) + 20

    def x(ns: int) -> float:
        return LABEL + area * (ns - start) / total

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}"'
        f' viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>',
        f'<text x="10" y="20" font-size="14" font-weight="bold">{escape(title)}</text>',
        f'<text x="10" y="38" fill="#555">trace {spans[0].trace_id}: {len(spans)} spans,'
        f" {total / 1e6:.1f} ms</text>",
    ]
    for tick in range(5):
        ns = start + total * tick // 4
        out.append(
            f'<line x1="{x(ns):.1f}" y1="{TOP - 12}" x2="{x(ns):.1f}" y2="{height - 14}"'
            ' stroke="#e5e5e5"/>'
            f'<text x="{x(ns):.1f}" y="{TOP - 16}" fill="#777" text-anchor="middle">'
            f"{(ns - start) / 1e6:.0f} ms</text>"
        )
    for row, (depth, s) in enumerate(rows):
        y = TOP + row * ROW
        left, right = x(s.start_ns), max(x(s.end_ns), x(s.start_ns) + 2)
        color = COLORS.get(s.kind, "#8e44ad")
        shown = " ".join(
            f"{k.split('.')[-1]}={s.attributes[k]}" for k in SHOWN if k in s.attributes
        )
        out.append(
            f'<text x="{10 + 16 * depth}" y="{y + 14}">{escape(s.name)}</text>'
            f'<text x="{10 + 16 * depth}" y="{y + 27}" fill="#888" font-size="10">'
            f"{KINDS.get(s.kind, '?')} · {s.span_id}</text>"
            f'<rect x="{left:.1f}" y="{y + 4}" width="{right - left:.1f}" height="14" rx="2"'
            f' fill="{color}"/>'
            f'<text x="{min(left, WIDTH - 260):.1f}" y="{y + 30}" fill="#444" font-size="10">'
            f"{(s.end_ns - s.start_ns) / 1e6:.1f} ms  {escape(shown)}</text>"
        )
    out.append("</svg>")
    return "\n".join(out)
