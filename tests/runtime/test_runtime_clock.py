"""The drainer's due-time clock with both clocks driven by the test: no I/O, no waiting."""

from __future__ import annotations

from relay.runtime.clock import DueClock


class Clocks:
    """A wall clock and a monotonic clock that the test moves by hand."""

    def __init__(self) -> None:
        self.wall_time = 1_000_000.0
        self.mono_time = 50.0

    def wall(self) -> float:
        return self.wall_time

    def monotonic(self) -> float:
        return self.mono_time

    def elapse(self, seconds: float) -> None:
        self.wall_time += seconds
        self.mono_time += seconds


def test_now_starts_at_the_wall_clock_and_advances_on_the_monotonic_clock() -> None:
    clocks = Clocks()
    due = DueClock(horizon=30.0, wall=clocks.wall, monotonic=clocks.monotonic)
    assert due.now() == 1_000_000.0
    clocks.elapse(2.5)
    assert due.now() == 1_000_002.5


def test_a_wall_clock_step_either_way_changes_no_wait() -> None:
    """A retry stamped 3 s ahead is due 3 s later, whatever the wall clock did."""
    clocks = Clocks()
    due = DueClock(horizon=30.0, wall=clocks.wall, monotonic=clocks.monotonic)
    stamp = due.now() + 3.0
    clocks.wall_time -= 3600.0
    assert due.until(stamp) == 3.0
    clocks.wall_time += 7200.0
    assert due.until(stamp) == 3.0
    clocks.elapse(3.0)
    assert due.until(stamp) == 0.0


def test_a_row_stamped_beyond_the_horizon_by_an_earlier_run_is_due_now() -> None:
    """The previous run stamped T + 3 s; this run starts after the clock went back an
    hour: due now, not in an hour. One stamped within the horizon keeps its time."""
    clocks = Clocks()
    stamped_then = clocks.wall_time + 3.0
    clocks.wall_time -= 3600.0
    due = DueClock(horizon=30.0, wall=clocks.wall, monotonic=clocks.monotonic)
    assert due.until(stamped_then) == 0.0
    assert due.until(due.now() + 20.0) == 20.0
