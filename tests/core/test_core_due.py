"""Due times against a stepped wall clock: the horizon and the clamp, pure, no I/O."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from relay.core.backoff import Backoff
from relay.core.delivery import (
    Delivery,
    DrainPolicy,
    Retry,
    decide,
    effective_due,
    retry_horizon,
)

unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
seconds = st.floats(min_value=0.0, max_value=86_400.0, allow_nan=False)
moments = st.floats(min_value=0.0, max_value=4e9, allow_nan=False)

schedules = st.lists(st.floats(min_value=0.0, max_value=86_400.0), min_size=1, max_size=8)
backoffs = st.builds(Backoff, base=seconds, cap=seconds)
policies = st.one_of(
    st.builds(DrainPolicy, schedule=schedules, jitter=st.floats(0.0, 0.99), backoff=backoffs),
    st.builds(DrainPolicy, schedule=st.none(), backoff=backoffs),
)


def row(attempts: int) -> Delivery:
    return Delivery("hook", 1, "ev-1", "acme", "mail.new", "mail.new", b"{}", 0.0, attempts)


@given(
    policies,
    st.integers(min_value=0, max_value=8),
    st.one_of(st.none(), st.floats(min_value=0.0, max_value=1e7)),
    moments,
    unit,
)
def test_no_retry_decide_schedules_is_beyond_the_horizon(
    policy: DrainPolicy, attempts: int, retry_after: float | None, now: float, r: float
) -> None:
    """Whatever the schedule, backoff, jitter and Retry-After: a retry stamped at ``now``
    is never taken for a row stamped on a clock that went back."""
    update = decide(policy, row(attempts), Retry("500", retry_after), now=now, rand=lambda: r)
    assert update is not None
    if update.state == "pending":
        assert now <= update.next_at <= now + retry_horizon(policy)
        assert effective_due(update.next_at, now, retry_horizon(policy)) == update.next_at


def test_the_horizon_is_the_longest_step_with_its_jitter_or_the_backoff_cap() -> None:
    assert retry_horizon(DrainPolicy(schedule=[5, 300, 60], jitter=0.2)) == 360.0
    assert retry_horizon(DrainPolicy(schedule=None, backoff=Backoff(base=1, cap=30))) == 30.0


@given(moments, seconds, seconds)
def test_a_stamp_within_the_horizon_is_kept(now: float, ahead: float, horizon: float) -> None:
    stamp = now + min(ahead, horizon)
    assert effective_due(stamp, now, horizon) == stamp
    assert effective_due(now - ahead, now, horizon) == now - ahead  # due already


def test_a_retry_stamped_before_the_clock_went_back_an_hour_is_due_now() -> None:
    """Stamped at T + 3 s; then the wall clock is stepped back an hour. Within the
    horizon it would be due in an hour and 3 s; beyond it, it is due now."""
    stamped_at, horizon = 1_000_000.0, 30.0
    now = stamped_at - 3600.0
    assert effective_due(stamped_at + 3.0, now, horizon) == now
    # A step smaller than the horizon leaves it late by at most the horizon.
    assert effective_due(stamped_at + 3.0, stamped_at - 20.0, horizon) == stamped_at + 3.0
