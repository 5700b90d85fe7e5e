"""Retry arithmetic and delivery decisions: pure functions, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.core.backoff import Backoff, parse_retry_after, schedule_delay
from relay.core.delivery import (
    Dead,
    Delivered,
    Delivery,
    Disable,
    DrainPolicy,
    Retry,
    Unavailable,
    decide,
)

unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@given(st.integers(min_value=0, max_value=10_000), unit)
def test_full_jitter_stays_within_the_capped_ceiling(attempt: int, r: float) -> None:
    backoff = Backoff(base=0.5, cap=30.0)
    delay = backoff.delay(attempt, r)
    assert 0.0 <= delay <= min(30.0, 0.5 * 2 ** min(attempt, 62))
    assert delay <= 30.0


def test_ceiling_grows_then_caps() -> None:
    backoff = Backoff(base=1.0, cap=10.0)
    assert [backoff.ceiling(n) for n in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


@given(st.integers(min_value=1, max_value=7), unit)
def test_schedule_jitter_bounds(attempts: int, r: float) -> None:
    schedule = [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0]
    delay = schedule_delay(schedule, attempts, jitter=0.2, rand=lambda: r)
    assert delay is not None
    base = schedule[attempts - 1]
    assert base * 0.8 - 1e-9 <= delay <= base * 1.2 + 1e-9


def test_schedule_is_spent_after_its_last_entry() -> None:
    assert schedule_delay([1.0, 2.0], 3, jitter=0.0) is None
    assert schedule_delay([1.0, 2.0], 0, jitter=0.0) is None
    assert schedule_delay([1.0, 2.0], 2, jitter=0.0) == 2.0


def test_retry_after_seconds_and_http_date() -> None:
    now = datetime(2026, 11, 28, 8, 0, 0, tzinfo=UTC)
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Sat, 28 Nov 2026 08:01:30 GMT", now=now) == 90.0
    assert parse_retry_after("Sat, 28 Nov 2026 07:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("  ") is None


@pytest.mark.parametrize(
    "value",
    [
        "²",
        "١٢٠",
        "１２",
        "12\u00a0",
        "Sat, 28 Nov 2026 08:01:30 GMT\u2028",
        "99999999999",
        "-5",
        "1.5",
    ],
)
def test_retry_after_reads_ascii_only_and_unreadable_is_none(value: str) -> None:
    assert parse_retry_after(value) is None


@given(st.text(max_size=40))
def test_retry_after_never_raises(value: str) -> None:
    result = parse_retry_after(value, now=datetime(2026, 11, 28, tzinfo=UTC))
    assert result is None or result >= 0.0


def _row(attempts: int = 0) -> Delivery:
    return Delivery(
        "webhook:x", 7, "id", "acme", "exmail.mail.new", "acme.mail.new", b"{}", 0.0, attempts
    )


def test_decide_maps_each_outcome() -> None:
    policy = DrainPolicy(schedule=[10.0, 20.0], jitter=0.0)
    assert decide(policy, _row(), Delivered(), now=100.0).state == "delivered"  # type: ignore[union-attr]
    dead = decide(policy, _row(), Dead("no"), now=100.0)
    assert dead is not None and dead.state == "dead" and dead.error == "no"
    assert decide(policy, _row(), Unavailable("down"), now=100.0) is None
    disabled = decide(policy, _row(), Disable("gone"), now=100.0)
    assert disabled is not None and disabled.state == "pending" and disabled.next_at == 0.0
    first = decide(policy, _row(0), Retry("500"), now=100.0)
    assert first is not None and first.state == "pending" and first.next_at == 110.0
    second = decide(policy, _row(1), Retry("500"), now=100.0)
    assert second is not None and second.next_at == 120.0
    spent = decide(policy, _row(2), Retry("500"), now=100.0)
    assert spent is not None and spent.state == "dead" and spent.error == "500"


def test_retry_after_wins_but_is_capped_by_the_schedule() -> None:
    policy = DrainPolicy(schedule=[1.0, 60.0], jitter=0.0)
    longer = decide(policy, _row(0), Retry("429", retry_after=30.0), now=0.0)
    assert longer is not None and longer.next_at == 30.0
    capped = decide(policy, _row(0), Retry("429", retry_after=3600.0), now=0.0)
    assert capped is not None and capped.next_at == 60.0
    shorter = decide(policy, _row(0), Retry("503", retry_after=0.1), now=0.0)
    assert shorter is not None and shorter.next_at == 1.0


def test_without_schedule_retries_forever_with_backoff() -> None:
    policy = DrainPolicy(schedule=None, backoff=Backoff(base=1.0, cap=8.0))
    for attempts in (0, 5, 500):
        update = decide(policy, _row(attempts), Retry("x"), now=0.0, rand=lambda: 1.0)
        assert update is not None and update.state == "pending"
        assert update.next_at == min(8.0, 2.0**attempts)
