"""The log throttle: the first occurrence logs, then one line per period, each saying how
many were left out; a reset makes the next one log at once."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.core.throttle import LogThrottle


def test_first_logs_then_once_per_period_with_the_suppressed_count() -> None:
    t = LogThrottle(every=30.0)
    assert t.quiet
    assert t.admit(100.0) == 0
    assert not t.quiet
    assert t.admit(101.0) is None
    assert t.admit(129.9) is None
    assert t.admit(130.0) == 2
    assert t.admit(130.5) is None
    assert t.reset() == 1
    assert t.quiet
    assert t.admit(131.0) == 0, "after a reset the next trouble logs at once"


def test_every_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="negative"):
        LogThrottle(every=-1)


@given(
    every=st.floats(0.1, 100),
    gaps=st.lists(st.floats(0, 50, allow_nan=False), min_size=1, max_size=200),
)
def test_lines_are_at_least_a_period_apart_and_nothing_goes_uncounted(
    every: float, gaps: list[float]
) -> None:
    t = LogThrottle(every=every)
    now, logged, counted = 0.0, [], 0
    for gap in gaps:
        now += gap
        answer = t.admit(now)
        if answer is not None:
            logged.append(now)
            counted += answer + 1
    assert logged[0] == gaps[0], "the first occurrence is logged"
    assert all(b - a >= every for a, b in itertools.pairwise(logged))
    assert counted + t.reset() == len(gaps)
