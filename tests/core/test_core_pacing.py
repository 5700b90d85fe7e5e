"""The pacing core: a token bucket and the first-come queue on it (no I/O, no clock)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.core.pacing import TokenBucket, TurnQueue, default_burst


def test_a_full_bucket_gives_its_burst_then_one_per_interval() -> None:
    bucket = TokenBucket(rate=4, burst=2, now=0.0)
    assert bucket.take(0.0) and bucket.take(0.0)
    assert not bucket.take(0.0)
    assert bucket.delay(0.0) == pytest.approx(0.25)
    assert not bucket.take(0.2)
    assert bucket.take(0.25)
    assert bucket.tokens(100.0) == 2.0, "never more than the burst"


def test_a_clock_that_steps_back_adds_nothing() -> None:
    bucket = TokenBucket(rate=10, burst=1, now=5.0)
    assert bucket.take(5.0)
    assert not bucket.take(1.0)
    assert bucket.delay(1.0) == pytest.approx(0.1)


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(rate=0, burst=1, now=0)
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(rate=1, burst=0, now=0)


def test_default_burst_is_a_quarter_second_at_least_one() -> None:
    assert default_burst(0.5) == 1
    assert default_burst(20) == 5
    assert default_burst(21) == 6
    assert default_burst(100_000) == 25_000


def test_waiters_go_in_arrival_order_one_token_each() -> None:
    queue: TurnQueue[str] = TurnQueue(TokenBucket(rate=10, burst=1, now=0.0))
    assert queue.arrive("a", 0.0), "nobody ahead, a token there"
    assert not queue.arrive("b", 0.0)
    assert not queue.arrive("c", 0.0)
    assert len(queue) == 2
    assert queue.next_in(0.0) == pytest.approx(0.1)
    assert queue.admit(0.05) == []
    assert queue.admit(0.1) == ["b"]
    assert queue.admit(0.3) == ["c"], "one token, not the two the wait was worth: burst 1"
    assert queue.next_in(0.3) is None


def test_a_newcomer_does_not_pass_the_queue_even_with_a_token_there() -> None:
    queue: TurnQueue[str] = TurnQueue(TokenBucket(rate=1, burst=3, now=0.0))
    for key in "abc":
        assert queue.arrive(key, 0.0)
    assert not queue.arrive("d", 0.0)
    # a token is back at 1.0, but "d" is first in line
    assert not queue.arrive("e", 1.0)
    assert queue.admit(1.0) == ["d"]


def test_a_waiter_that_leaves_gives_its_place_up() -> None:
    queue: TurnQueue[str] = TurnQueue(TokenBucket(rate=1, burst=1, now=0.0))
    assert queue.arrive("a", 0.0)
    queue.arrive("b", 0.0)
    queue.arrive("c", 0.0)
    queue.leave("b")
    queue.leave("nobody")
    assert queue.admit(1.0) == ["c"]


def test_a_turn_given_back_goes_to_the_next() -> None:
    queue: TurnQueue[str] = TurnQueue(TokenBucket(rate=1, burst=1, now=0.0))
    assert queue.arrive("a", 0.0)
    queue.arrive("b", 0.0)
    queue.give_back(0.0)
    assert queue.admit(0.0) == ["b"]


@settings(max_examples=200, deadline=None)
@given(
    rate=st.sampled_from([1.0, 3.0, 20.0, 50.0]),
    arrivals=st.lists(st.floats(min_value=0, max_value=20), min_size=1, max_size=300),
    steps=st.lists(st.floats(min_value=0.001, max_value=0.7), min_size=1, max_size=400),
)
def test_no_second_ever_sees_more_than_rate_plus_burst(
    rate: float, arrivals: list[float], steps: list[float]
) -> None:
    """Waiters arrive at random times; the shell wakes at random moments (late or early)
    and admits whoever it may. In any window of one second, the turns granted are at most
    ``rate + burst``; and every waiter gets its turn, in arrival order."""
    burst = default_burst(rate)
    queue: TurnQueue[int] = TurnQueue(TokenBucket(rate, burst, now=0.0))
    pending = sorted(arrivals)
    granted: list[tuple[float, int]] = []
    now = 0.0
    i = 0
    step = 0
    while i < len(pending) or len(queue):
        while i < len(pending) and pending[i] <= now:
            if queue.arrive(i, now):
                granted.append((now, i))
            i += 1
        granted += [(now, key) for key in queue.admit(now)]
        now += steps[step % len(steps)]
        step += 1
    assert [key for _, key in granted] == list(range(len(pending)))
    times = [at for at, _ in granted]
    for start in times:
        in_window = sum(1 for t in times if start <= t < start + 1.0)
        assert in_window <= math.floor(rate + burst) + 1e-9
