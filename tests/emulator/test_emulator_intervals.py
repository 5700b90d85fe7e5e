"""The listen log's bookkeeping with no server: the interval math (``_intervals``) checked
against brute force with hypothesis, and ``ListenLog`` driven by a hand-moved clock."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.emulator import ListenLog, tenants_seed
from relay.emulator._errors import EmulatorSeedError
from relay.emulator._intervals import gaps, overlaps

# -- interval math ------------------------------------------------------------------------

spans = st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), max_size=12)


def covered(cell: int, items: list[tuple[float, float]]) -> bool:
    """Whether the unit cell [cell, cell + 1) lies inside some span (integer endpoints)."""
    return any(s <= cell and cell + 1 <= e for s, e in items)


@given(spans, st.integers(0, 40), st.integers(0, 40))
def test_gaps_are_exactly_the_uncovered_cells(
    items: list[tuple[float, float]], start: int, end: int
) -> None:
    found = gaps(items, start, end)
    for (_, e1), (s2, _) in itertools.pairwise(found):
        assert e1 < s2  # disjoint, in order, maximal (never touching)
    assert all(start <= s < e <= end for s, e in found)
    in_gap = {c for s, e in found for c in range(int(s), int(e))}
    assert in_gap == {c for c in range(start, end) if not covered(c, items)}


def test_gaps_examples() -> None:
    assert gaps([], 0.0, 10.0) == [(0.0, 10.0)]
    assert gaps([(1.0, 3.0), (2.0, 4.0), (6.0, 7.0)], 0.0, 10.0) == [
        (0.0, 1.0),
        (4.0, 6.0),
        (7.0, 10.0),
    ]
    assert gaps([(0.0, 2.0), (2.0, 5.0)], 0.0, 5.0) == []  # touching spans leave no gap
    assert gaps([(-5.0, 20.0)], 0.0, 10.0) == []
    assert gaps([(3.0, 3.0)], 0.0, 5.0) == [(0.0, 5.0)]  # an empty span covers nothing
    assert gaps([(1.0, 2.0)], 5.0, 5.0) == []


@given(spans.map(lambda xs: list(enumerate(xs))))
def test_overlaps_match_brute_force(items: list[tuple[int, tuple[float, float]]]) -> None:
    def differ(a: tuple[int, tuple[float, float]], b: tuple[int, tuple[float, float]]) -> bool:
        return (a[0] + b[0]) % 3 != 0  # an arbitrary, symmetric rule

    found = overlaps(items, lambda item: item[1], differ)
    got = {frozenset((a[0], b[0])): shared for a, b, shared in found}
    assert len(got) == len(found)  # each pair once
    expected = {}
    for i, (ka, (s1, e1)) in enumerate(items):
        for kb, (s2, e2) in items[i + 1 :]:
            start, end = max(s1, s2), min(e1, e2)
            if end > start and differ((ka, (s1, e1)), (kb, (s2, e2))):
                expected[frozenset((ka, kb))] = (start, end)
    assert got == expected


# -- the log, on a hand-moved clock ---------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_overlap_between_replicas_and_tokens_not_within_one_session(clock: Clock) -> None:
    log = ListenLog(clock=clock, wall=lambda: 0.0)
    a = log.opened("x@a.test", replica="r1", peer="p1", token=1)
    clock.now = 101.0
    same = log.opened("x@a.test", replica="r1", peer="p2", token=1)  # same replica, same token
    clock.now = 102.0
    b = log.opened("x@a.test", replica="r2", peer="p3", token=1)
    clock.now = 102.5
    log.closed(a, "client_gone")
    log.closed(same, "keepalive")
    clock.now = 103.0
    c = log.opened("x@a.test", replica="r2", peer="p3", token=2)  # same replica, new token
    clock.now = 104.0
    found = [(o.first.id, o.second.id, o.start, o.end, o.open) for o in log.overlaps()]
    assert found == [
        (a, b, 102.0, 102.5, False),
        (same, b, 102.0, 102.5, False),
        (b, c, 103.0, 104.0, True),  # both held: it ends now
    ]
    assert log.overlaps(since=102.6) == log.overlaps()[2:]
    assert log.overlaps("other@b.test") == []


def test_gaps_per_company_open_and_clipped(clock: Clock) -> None:
    log = ListenLog(clock=clock, wall=lambda: 0.0)
    first = log.opened("x@a.test", replica="r1", peer="p", token=1)
    clock.now = 110.0
    log.closed(first, "data")
    clock.now = 113.0
    second = log.opened("x@a.test", replica="r2", peer="p", token=2)
    clock.now = 120.0
    found = log.gaps(["x@a.test", "y@b.test"], since=105.0)
    assert [(g.company, g.start, g.end, g.open, g.clipped) for g in found] == [
        ("y@b.test", 105.0, 120.0, True, True),  # never listened: one gap, still open
        ("x@a.test", 110.0, 113.0, False, False),  # the takeover
    ]
    assert found[1].seconds == 3.0
    assert log.gaps(["x@a.test"], since=105.0, min_seconds=3.5) == []
    log.closed(second, "keepalive")
    clock.now = 121.0
    assert [(g.start, g.open) for g in log.gaps(["x@a.test"], since=100.0)] == [
        (110.0, False),
        (120.0, True),
    ]


def test_ring_buffer_bounds_memory_and_moves_the_horizon(clock: Clock) -> None:
    log = ListenLog(size=3, clock=clock, wall=lambda: 0.0)
    for n in range(5):  # listens [0,1), [2,3), [4,5), [6,7), [8,9) after 100
        clock.now = 100.0 + 2 * n
        listen = log.opened("x@a.test", replica="r", peer="p", token=1)
        clock.now += 1
        log.closed(listen, "keepalive")
    assert [li.start for li in log.listens("x@a.test")] == [104.0, 106.0, 108.0]
    clock.now = 110.0
    # the gaps before 103 (the last dropped listen's end) are unknown: the window starts there
    found = log.gaps(["x@a.test"], since=0.0)
    assert [(g.start, g.end, g.clipped) for g in found] == [
        (103.0, 104.0, True),
        (105.0, 106.0, False),
        (107.0, 108.0, False),
        (109.0, 110.0, False),
    ]


def test_token_fetches_clear_and_open_listens(clock: Clock) -> None:
    log = ListenLog(size=2, clock=clock, wall=lambda: 5.0)
    for generation in (1, 2, 3):
        clock.now += 1
        log.token_issued("x@a.test", generation)
    assert log.token_fetch_count("x@a.test") == 3  # all counted, two kept
    assert [(f.generation, f.at) for f in log.token_fetches("x@a.test")] == [(2, 102.0), (3, 103.0)]
    assert [f.generation for f in log.token_fetches(since=102.5)] == [3]
    held = log.opened("x@a.test", replica="r", peer="p", token=3)
    log.clear()
    assert log.token_fetch_count("x@a.test") == 0
    assert [li.id for li in log.listens()] == [held]  # still open, still known
    assert log.open_count("x@a.test") == 1
    log.closed(held, "client_gone")
    log.closed(held, "client_gone")  # twice, or after a clear: ignored
    assert [li.outcome for li in log.listens("x@a.test")] == ["client_gone"]
    assert log.open_count() == 0
    with pytest.raises(ValueError, match="size"):
        ListenLog(size=0)


def test_tenants_seed() -> None:
    seeds = tenants_seed(12, users=2)
    assert len({s.admin for s in seeds}) == 12
    assert seeds[0].admin == "admin@t01.test"
    assert seeds[11].key == "t12-key"
    assert [u.alias for u in seeds[3].users] == ["user1@t04.test", "user2@t04.test"]
    assert tenants_seed(1, prefix="ha", first=100)[0].domains == ("ha100.test",)
    with pytest.raises(EmulatorSeedError):
        tenants_seed(0)
    with pytest.raises(EmulatorSeedError, match="prefix"):
        tenants_seed(1, prefix="Not A Domain")
