"""The drainer's token bucket (``rate_limit``), on an injected clock and sleep: its
arithmetic, without waiting for any of it."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.runtime.ratelimit import RateLimiter


class FakeTime:
    """A clock that moves only when the limiter sleeps (or the test says so)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds


def run(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` to its end; with the fake sleep it never suspends."""
    with pytest.raises(StopIteration):
        coro.send(None)


def limiter(rate: float) -> tuple[RateLimiter, FakeTime]:
    time = FakeTime()
    return RateLimiter(rate, clock=time.clock, sleep=time.sleep), time


def test_a_burst_of_rate_then_rate_per_second() -> None:
    bucket, time = limiter(5)
    starts = []
    for _ in range(15):
        run(bucket.acquire())
        starts.append(time.now)
    assert starts[:5] == [0.0] * 5
    assert starts[5:] == pytest.approx([0.2 * n for n in range(1, 11)])


def test_idle_time_refills_up_to_the_burst_and_no_further() -> None:
    bucket, time = limiter(4)
    for _ in range(4):
        run(bucket.acquire())
    time.now += 60.0  # a quiet minute buys a burst of 4, not of 240
    for _ in range(4):
        run(bucket.acquire())
    assert time.sleeps == []
    run(bucket.acquire())
    assert time.sleeps == [pytest.approx(0.25)]


def test_a_rate_below_one_still_lets_one_start_through() -> None:
    bucket, time = limiter(0.5)
    run(bucket.acquire())
    assert time.now == 0.0
    run(bucket.acquire())
    assert time.now == pytest.approx(2.0)


def test_a_clock_stepped_back_takes_no_tokens_away() -> None:
    bucket, time = limiter(2)
    time.now = -100.0
    run(bucket.acquire())
    run(bucket.acquire())
    assert time.sleeps == []


def test_no_rate_means_no_limiter() -> None:
    with pytest.raises(ValueError, match="positive"):
        RateLimiter(0, clock=FakeTime().clock)


def gcra(rate: float, burst: float, arrivals: list[float]) -> list[float]:
    """The earliest start of each arrival under the same limit, worked out the other
    way: the generic cell rate algorithm (virtual scheduling), which is equivalent to a
    full token bucket of ``burst`` tokens refilled at ``rate`` per second."""
    interval, tolerance = 1.0 / rate, (burst - 1.0) / rate
    starts: list[float] = []
    tat = arrivals[0]  # theoretical arrival time; at or before the first: a full bucket
    for arrival in arrivals:
        start = max(arrival, tat - tolerance)
        tat = max(start, tat) + interval
        starts.append(start)
    return starts


@given(
    rate=st.floats(min_value=0.2, max_value=50.0),
    gaps=st.lists(st.floats(min_value=0.0, max_value=2.0), min_size=1, max_size=60),
)
def test_starts_are_as_early_as_the_limit_allows_and_never_earlier(
    rate: float, gaps: list[float]
) -> None:
    """Whatever the arrivals: each start is the earliest the bucket allows (GCRA), so in
    any interval of t seconds at most burst + rate * t attempts start."""
    bucket, time = limiter(rate)
    arrivals: list[float] = []
    starts: list[float] = []
    for gap in gaps:
        # The next caller arrives ``gap`` after the previous one started.
        time.now += gap
        arrivals.append(time.now)
        run(bucket.acquire())
        starts.append(time.now)
        # The reference needs the arrival as the limiter saw it: after the last start.
    expected = gcra(rate, bucket.burst, arrivals)
    assert starts == pytest.approx(expected, abs=1e-6)
    for i in range(len(starts)):
        for j in range(i, len(starts)):
            assert j - i + 1 <= bucket.burst + rate * (starts[j] - starts[i]) + 1e-6
