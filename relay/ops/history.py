"""The last hour of the relay's own counters, kept in memory for the status page's charts.

Pure: a :class:`Sample` is one reading of the counters (cumulative totals, gauges and the
delivery-latency histogram's cumulative buckets); :class:`History` keeps the newest ones
in a ring (one point every ``interval`` seconds for ``span`` seconds, so about 360 points
for an hour at 10 s); the functions below turn the ring into the series the charts draw:
rates per minute from consecutive totals, gauges as they were, and latency quantiles over
the minute before each point, estimated from the histogram's buckets the way Prometheus'
``histogram_quantile`` does. Nothing here reads a clock or the registry
(:mod:`relay.ops.sampler` does).
"""

from __future__ import annotations

import collections
import itertools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "History",
    "Point",
    "Sample",
    "gauge_series",
    "latency_series",
    "quantile",
    "rate_series",
]

Point = tuple[float, float | None]
"""(time, value); ``None`` is a gap (nothing to say for that point)."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading at wall-clock time ``at``. Totals are cumulative since start;
    ``latency`` maps each bucket's upper bound (``math.inf`` last) to the cumulative
    count of deliveries at most that slow, summed over the sinks."""

    at: float
    events_in: float = 0.0
    events_out: float = 0.0
    listen_failures: float = 0.0
    backlog: Mapping[str, float] = field(default_factory=dict)
    latency: Mapping[float, float] = field(default_factory=dict)


class History:
    """The newest samples, oldest first: at most ``span / interval + 1`` of them."""

    def __init__(self, *, interval: float = 10.0, span: float = 3600.0) -> None:
        if interval <= 0 or span < interval:
            raise ValueError("history: need 0 < interval <= span")
        self.interval = interval
        self.span = span
        self._ring: collections.deque[Sample] = collections.deque(maxlen=int(span // interval) + 1)

    def add(self, sample: Sample) -> None:
        """Keep ``sample``; one older than the newest (a clock step back) restarts the
        ring, so the series never run backwards."""
        if self._ring and sample.at < self._ring[-1].at:
            self._ring.clear()
        self._ring.append(sample)

    def samples(self) -> tuple[Sample, ...]:
        return tuple(self._ring)

    def __len__(self) -> int:
        return len(self._ring)

    def __iter__(self) -> Iterator[Sample]:
        return iter(tuple(self._ring))


def _increase(before: float, after: float) -> float:
    """How much a counter grew; a counter that went down was reset (a restart)."""
    return after - before if after >= before else after


def rate_series(samples: Sequence[Sample], total: Callable[[Sample], float]) -> list[Point]:
    """Per minute, between each sample and the one before it (the first has none)."""
    points: list[Point] = []
    for before, after in itertools.pairwise(samples):
        seconds = after.at - before.at
        if seconds <= 0:
            continue
        points.append((after.at, _increase(total(before), total(after)) * 60.0 / seconds))
    return points


def gauge_series(samples: Sequence[Sample], key: str) -> list[Point]:
    """One sink's backlog at each sample (a gap where the sink was not yet known)."""
    return [(s.at, s.backlog.get(key)) for s in samples]


def quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """The ``q`` quantile of cumulative ``buckets`` (upper bound -> count), interpolated
    linearly inside the bucket it falls in; ``None`` when the buckets are empty. A rank in
    the ``+Inf`` bucket answers the highest finite bound (as ``histogram_quantile``)."""
    bounds = sorted(buckets)
    if not bounds:
        return None
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank and count > below:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = (bound if not math.isinf(bound) else lower), count
    return lower


def _bucket_increase(
    before: Mapping[float, float], after: Mapping[float, float]
) -> dict[float, float]:
    return {le: _increase(before.get(le, 0.0), count) for le, count in after.items()}


def latency_series(samples: Sequence[Sample], q: float, *, window: float = 60.0) -> list[Point]:
    """At each sample, the ``q`` quantile of the deliveries confirmed in the ``window``
    seconds before it (from the oldest sample at least that old, else the first); a gap
    where nothing was delivered."""
    points: list[Point] = []
    start = 0
    for i, after in enumerate(samples):
        if i == 0:
            continue
        while start + 1 < i and samples[start + 1].at <= after.at - window:
            start += 1
        increase = _bucket_increase(samples[start].latency, after.latency)
        points.append((after.at, quantile(q, increase)))
    return points
