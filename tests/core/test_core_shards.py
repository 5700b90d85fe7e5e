"""The shard planner, exhaustively: it never wants more than the fair share, and replicas
that all follow it (against a broker that grants each lease to one) cover every shard,
disjointly, and then stop moving."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.core.shards import Plan, fair_share, plan, preference, score, shard_of

replica_ids = st.lists(
    st.text(alphabet="abcdefghijklmnop-0123456789", min_size=1, max_size=12),
    min_size=1,
    max_size=7,
    unique=True,
)
shard_counts = st.integers(min_value=1, max_value=40)


class Broker:
    """The only thing the simulation trusts: one owner per shard, like exclusive queues."""

    def __init__(self, shards: int) -> None:
        self.shards = shards
        self.owner: dict[int, str] = {}

    def held_by(self, replica: str) -> set[int]:
        return {s for s, r in self.owner.items() if r == replica}

    def step(self, me: str, live: list[str], *, informed: bool) -> Plan:
        """``me`` plans once and acts; a refused declare is skipped, as the manager does."""
        held = self.held_by(me)
        known = dict(self.owner) if informed else None
        p = plan(me=me, live=live, held=held, shards=self.shards, known=known)
        for shard in p.release:
            del self.owner[shard]
        taken = 0
        for shard in p.acquire:
            if taken == p.room:
                break
            if shard not in self.owner:  # the declare succeeds
                self.owner[shard] = me
                taken += 1
        return p

    def settle(self, live: list[str], *, informed: bool, rounds: int = 6) -> int:
        """Round-robin until nobody changes anything; the number of rounds it took."""
        for n in range(1, rounds + 1):
            before = dict(self.owner)
            for me in live:
                self.step(me, live, informed=informed)
            if self.owner == before:
                return n
        raise AssertionError(f"not stable after {rounds} rounds: {self.owner}")


def assert_balanced(broker: Broker, live: list[str]) -> None:
    share = fair_share(broker.shards, len(live))
    assert set(broker.owner) == set(range(broker.shards)), "every shard covered"
    assert set(broker.owner.values()) <= set(live), "only live replicas own shards"
    for r in live:
        assert len(broker.held_by(r)) <= share


def test_shard_of_is_stable_and_checks_its_count() -> None:
    # Pinned values: the hash (crc32, docs/architecture.md) is a contract between
    # releases and replicas; a change would move tenants between shards.
    assert [shard_of(n, 16) for n in ("acme", "gzdev", "tenant-7")] == [14, 15, 10]
    assert [shard_of(n, 3) for n in ("acme", "gzdev", "tenant-7")] == [2, 2, 1]
    assert shard_of("acme", 1) == 0
    with pytest.raises(ValueError, match="at least 1"):
        shard_of("acme", 0)


@given(shards=shard_counts, live=st.integers(min_value=-2, max_value=60))
def test_fair_share_is_the_ceiling(shards: int, live: int) -> None:
    share = fair_share(shards, live)
    n = max(live, 1)
    assert share == math.ceil(shards / n)
    assert share * n >= shards, "the live replicas can always cover every shard"


@given(ids=replica_ids, shards=shard_counts)
def test_preference_is_a_permutation_and_natural_shards_partition(
    ids: list[str], shards: int
) -> None:
    natural: dict[int, str] = {}
    for r in ids:
        order = preference(r, ids, shards)
        assert sorted(order) == list(range(shards))
        # The leading shards of r's order are those r scores highest on: its natural ones.
        firsts = [s for s in order if _is_natural(r, ids, s)]
        assert list(order[: len(firsts)]) == firsts
        for s in firsts:
            assert s not in natural, "two replicas find the same shard natural"
            natural[s] = r
    assert set(natural) == set(range(shards)), "every shard is someone's natural shard"


def _is_natural(r: str, ids: list[str], shard: int) -> bool:
    return max(ids, key=lambda o: (score(o, shard), o)) == r


@given(
    me=st.sampled_from(["a", "b", "c"]),
    live=st.sets(st.sampled_from(["a", "b", "c", "d", "e"])),
    shards=shard_counts,
    data=st.data(),
)
def test_a_plan_never_wants_more_than_the_fair_share(
    me: str, live: set[str], shards: int, data: st.DataObject
) -> None:
    held = data.draw(st.sets(st.integers(0, shards - 1)))
    known = data.draw(
        st.dictionaries(st.integers(0, shards - 1), st.sampled_from(["a", "b", "c", "z"]))
    )
    p = plan(me=me, live=live, held=held, shards=shards, known=known)
    share = fair_share(shards, len(live | {me}))
    assert not (p.release and p.acquire), "never both at once"
    assert set(p.release) <= held
    assert not set(p.acquire) & held
    assert len(set(p.acquire)) == len(p.acquire)
    kept = len(held) - len(p.release)
    assert kept + min(p.room, len(p.acquire)) <= share
    if len(held) > share:
        assert kept == share
        # The highest-numbered extras go first.
        assert list(p.release) == sorted(held, reverse=True)[: len(held) - share]
    else:
        assert p.release == ()
    alive = live | {me}
    for s in p.acquire:
        assert known.get(s, me) == me or known[s] not in alive, "a live owner's shard is tried"


@settings(max_examples=300)
@given(ids=replica_ids, shards=shard_counts, informed=st.booleans())
def test_replicas_starting_together_cover_every_shard_and_settle(
    ids: list[str], shards: int, informed: bool
) -> None:
    broker = Broker(shards)
    broker.settle(ids, informed=informed)
    assert_balanced(broker, ids)
    # Stable: nobody wants to release, and nothing is left to take.
    for r in ids:
        p = plan(me=r, live=ids, held=broker.held_by(r), shards=shards, known=dict(broker.owner))
        assert p.release == () and p.acquire == ()


@settings(max_examples=300)
@given(ids=replica_ids, shards=shard_counts, seed=st.integers(0, 2**32 - 1))
def test_any_interleaving_converges(ids: list[str], shards: int, seed: int) -> None:
    """Replicas step in a random order (some many times before others act at all)."""
    rng = random.Random(seed)
    broker = Broker(shards)
    for _ in range(rng.randrange(0, 30)):
        broker.step(rng.choice(ids), ids, informed=rng.random() < 0.5)
    broker.settle(ids, informed=True)
    assert_balanced(broker, ids)


@settings(max_examples=300)
@given(ids=replica_ids, shards=shard_counts, newcomer=st.text("xyz", min_size=13, max_size=14))
def test_a_replica_joining_gets_shards_handed_over(
    ids: list[str], shards: int, newcomer: str
) -> None:
    broker = Broker(shards)
    broker.settle(ids, informed=True)
    before = {r: broker.held_by(r) for r in ids}
    grown = [*ids, newcomer]
    share = fair_share(shards, len(grown))
    broker.settle(grown, informed=True)
    assert_balanced(broker, grown)
    for r, held in before.items():
        if len(held) <= share:
            assert held <= broker.held_by(r), "a replica within its share keeps its shards"
        else:
            assert len(broker.held_by(r)) == share, "extras and only extras handed over"


@settings(max_examples=300)
@given(ids=replica_ids.filter(lambda ids: len(ids) >= 2), shards=shard_counts, data=st.data())
def test_a_dead_replicas_shards_are_taken_over(
    ids: list[str], shards: int, data: st.DataObject
) -> None:
    broker = Broker(shards)
    broker.settle(ids, informed=True)
    dead = data.draw(st.sampled_from(ids))
    survivors = [r for r in ids if r != dead]
    # Presence still names the dead replica for a while: the survivors want no more yet,
    # and the broker has not freed its leases (its connection is not yet declared dead).
    for r in survivors:
        broker.step(r, ids, informed=True)
    assert all(broker.owner[s] == dead for s in broker.held_by(dead))
    # The broker frees the leases; presence times the replica out.
    for s in broker.held_by(dead):
        del broker.owner[s]
    broker.settle(survivors, informed=True)
    assert_balanced(broker, survivors)


def test_plan_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="out of range"):
        plan(me="a", live=["a"], held={16}, shards=16)
    with pytest.raises(ValueError, match="at least 1"):
        plan(me="a", live=["a"], held=set(), shards=0)


def test_two_replicas_take_eight_each_first_from_disjoint_shards() -> None:
    a = plan(me="replica-a", live=["replica-a", "replica-b"], held=set(), shards=16)
    b = plan(me="replica-b", live=["replica-a", "replica-b"], held=set(), shards=16)
    assert a.room == b.room == 8
    natural_a = [s for s in a.acquire if _is_natural("replica-a", ["replica-a", "replica-b"], s)]
    natural_b = [s for s in b.acquire if _is_natural("replica-b", ["replica-a", "replica-b"], s)]
    assert not set(natural_a) & set(natural_b)
    assert len(natural_a) + len(natural_b) == 16
