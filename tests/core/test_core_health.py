"""The health window (:mod:`relay.core.health`): when a replica becomes unfit to hold
shards, and when it is fit again. Pure: time is passed in."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.core.health import HealthWindow


def test_a_condition_failing_for_release_after_makes_the_replica_unfit() -> None:
    window = HealthWindow(release_after=30.0)
    window.observe("journal", "not writable: database or disk is full", 100.0)
    assert window.unfit(100.0) is None
    window.observe("journal", "not writable: database or disk is full", 129.0)
    assert window.unfit(129.9) is None
    assert window.unfit(130.0) == "journal not writable: database or disk is full for 30 s"
    assert window.failing(131.0) == {"journal": 31.0}


def test_one_good_sample_starts_the_count_again_and_fit_is_at_once() -> None:
    window = HealthWindow(release_after=10.0)
    window.observe("delivery link", "down", 0.0)
    window.observe("delivery link", None, 9.0)  # back before the window ran out
    window.observe("delivery link", "down", 9.5)
    assert window.unfit(15.0) is None
    assert window.unfit(19.5) == "delivery link down for 10 s"
    window.observe("delivery link", None, 20.0)
    assert window.unfit(20.0) is None  # rejoins as soon as nothing fails
    assert window.failing(20.0) == {}


def test_the_longest_failing_condition_is_the_reason() -> None:
    window = HealthWindow(release_after=5.0)
    window.observe("journal", "not writable: locked", 0.0)
    window.observe("delivery link", "down", 2.0)
    assert window.unfit(8.0) == "journal not writable: locked for 8 s"
    window.observe("journal", None, 8.0)
    assert window.unfit(8.0) == "delivery link down for 6 s"


def test_release_after_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="release_after"):
        HealthWindow(release_after=-1.0)


@given(
    samples=st.lists(st.tuples(st.floats(0, 5), st.booleans()), min_size=1, max_size=40),
    release_after=st.floats(0.5, 20),
)
def test_unfit_exactly_when_the_last_unbroken_run_of_failures_is_long_enough(
    samples: list[tuple[float, bool]], release_after: float
) -> None:
    window = HealthWindow(release_after=release_after)
    now = 0.0
    run_start: float | None = None
    for step, ok in samples:
        now += step
        window.observe("journal", None if ok else "not writable", now)
        if ok:
            run_start = None
        elif run_start is None:
            run_start = now
        expected = run_start is not None and now - run_start >= release_after
        assert (window.unfit(now) is not None) == expected
