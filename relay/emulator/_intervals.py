"""Interval math for the listen log: where spans overlap, and where none covers a window.

Pure functions on ``(start, end)`` pairs of floats (seconds on one clock), no I/O and no
clock of their own: the listen log (``_listenlog``) hands them its listens, with "now"
as the end of the ones still open. Kept apart so the arithmetic is tested on its own,
exhaustively, with no server in the way.

Conventions: a span covers ``[start, end)``; one with ``end <= start`` covers nothing.
Two spans that only touch (one ends when the other starts) do not overlap, and leave
no gap between them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

__all__ = ["gaps", "overlaps"]

T = TypeVar("T")
Span = tuple[float, float]


def gaps(spans: Iterable[Span], start: float, end: float) -> list[Span]:
    """The maximal parts of ``[start, end)`` that no span covers, in order."""
    out: list[Span] = []
    cursor = start
    for s, e in sorted(spans):
        if cursor >= end:
            break
        if e <= s or e <= cursor:
            continue
        if s > cursor:
            out.append((cursor, min(s, end)))
        cursor = max(cursor, e)
    if cursor < end:
        out.append((cursor, end))
    return out


def overlaps(
    items: Sequence[T], span: Callable[[T], Span], differ: Callable[[T, T], bool]
) -> list[tuple[T, T, Span]]:
    """Every pair of items whose spans share time and that ``differ``, with the shared
    span; pairs in order of their earlier item's start. A sweep: after sorting, each item
    is compared only with the items that start before it ends."""
    ordered = sorted(items, key=lambda item: span(item)[0])
    out: list[tuple[T, T, Span]] = []
    for i, first in enumerate(ordered):
        e1 = span(first)[1]
        for second in ordered[i + 1 :]:
            s2, e2 = span(second)
            if s2 >= e1:
                break  # sorted by start: nothing later starts before ``first`` ends
            shared = (s2, min(e1, e2))
            if shared[1] > shared[0] and differ(first, second):
                out.append((first, second, shared))
    return out
