"""Checkpoint snapshots, without a broker: the message format round-trips, anything
else is malformed (never an exception), nothing unsigned or signed with another secret
is even decoded, and the book owes exactly the newest Ver per tenant whatever order
offers, sends, confirms and failures come in."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.core.checkpoints import (
    KIND,
    CheckpointBook,
    Malformed,
    Snapshot,
    decode,
    encode,
    merge,
    open_message,
)
from relay.core.envelope import Refused, sign

tenants = st.text(min_size=1, max_size=20)
vers = st.dictionaries(tenants, st.integers(min_value=0, max_value=2**62), max_size=30)
SECRET = b"deployment-secret-0123456789"


@given(st.integers(0, 1023), vers)
def test_snapshots_round_trip(shard: int, v: dict[str, int]) -> None:
    assert decode(encode(shard, v)) == Snapshot(shard, v)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\xff\xfe",
        b"not json",
        b"[]",
        b"42",
        b'{"vers": {"a": 1}}',
        b'{"shard": 1, "vers": []}',
        b'{"shard": "1", "vers": {}}',
        b'{"shard": -1, "vers": {}}',
        b'{"shard": true, "vers": {}}',
        b'{"shard": 1, "vers": {"a": "12"}}',
        b'{"shard": 1, "vers": {"a": -1}}',
        b'{"shard": 1, "vers": {"a": true}}',
        b'{"shard": 1, "vers": {"a": 1.5}}',
        b'{"shard": 1, "vers": {"": 1}}',
        b'{"shard": 1, "vers": {"a": 1}, "extra": 1}',
    ],
)
def test_anything_else_is_malformed(body: bytes) -> None:
    assert isinstance(decode(body), Malformed)


@given(st.integers(0, 15), vers, st.integers(0, 2**40))
def test_only_a_message_signed_with_our_secret_opens(
    shard: int, v: dict[str, int], at_ms: int
) -> None:
    body = encode(shard, v)
    mine = sign(KIND, body, secret=SECRET, at_ms=at_ms)
    assert open_message(body, mine, shard=shard, secrets=[SECRET]) == Snapshot(shard, v)
    # Rotation: any configured secret verifies.
    assert open_message(body, mine, shard=shard, secrets=[b"x" * 20, SECRET]) == Snapshot(shard, v)
    other = sign(KIND, body, secret=b"another-deployment-secret", at_ms=at_ms)
    presence = sign("presence", body, secret=SECRET, at_ms=at_ms)
    for header in (None, other, presence, mine.replace("v1,", "v2,")):
        assert isinstance(open_message(body, header, shard=shard, secrets=[SECRET]), Refused)
    # A signed snapshot of another shard is not this shard's.
    assert isinstance(open_message(body, mine, shard=shard + 1, secrets=[SECRET]), Malformed)


def test_a_body_changed_after_signing_is_refused() -> None:
    body = encode(1, {"acme": 5})
    header = sign(KIND, body, secret=SECRET, at_ms=1)
    forged = encode(1, {"acme": 50})
    assert open_message(forged, header, shard=1, secrets=[SECRET]) == Refused("bad signature")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_decode_never_raises(body: bytes) -> None:
    assert isinstance(decode(body), Snapshot | Malformed)


@given(json_values)
def test_wrapped_garbage_never_raises(value: object) -> None:
    for wrapped in (
        {"shard": 1, "vers": value},
        {"shard": value, "vers": {}},
        {"shard": 1, "vers": {"a": value}},
    ):
        assert isinstance(decode(json.dumps(wrapped).encode()), Snapshot | Malformed)


@given(st.lists(vers, max_size=6))
def test_merge_keeps_the_largest(parts: list[dict[str, int]]) -> None:
    into: dict[str, int] = {}
    for part in parts:
        merge(into, part)
    expected: dict[str, int] = {}
    for part in parts:
        for tenant, ver in part.items():
            expected[tenant] = max(expected.get(tenant, 0), ver)
    assert into == expected


def test_the_book_coalesces_to_the_newest() -> None:
    book = CheckpointBook()
    for ver in (3, 7, 5):
        book.offer("a", ver)
    book.offer("b", 1)
    assert not book.offer("a", 7)  # not newer: nothing owed for it
    assert book.take() == {"a": 7, "b": 1}
    book.confirmed()
    assert book.idle
    assert not book.offer("a", 6)


def test_a_failed_batch_is_owed_again_unless_newer_arrived() -> None:
    book = CheckpointBook()
    book.offer("a", 1)
    book.offer("b", 1)
    assert book.take() == {"a": 1, "b": 1}
    book.offer("a", 2)  # while the batch is in flight
    book.failed()
    assert book.take() == {"a": 2, "b": 1}


def test_what_is_learned_is_known_not_owed() -> None:
    book = CheckpointBook()
    book.offer("a", 1)
    assert book.take() == {"a": 1}
    book.confirmed()
    book.learn({"c": 9, "a": 0})  # read from the broker: known, not owed
    assert book.idle
    assert dict(book.known) == {"a": 1, "c": 9}
    assert not book.offer("c", 9)


ops = st.lists(
    st.one_of(
        st.tuples(st.just("offer"), st.sampled_from("abc"), st.integers(0, 20)),
        st.tuples(st.just("send"), st.booleans()),
    ),
    max_size=60,
)


@given(ops)
def test_the_broker_ends_with_the_newest_of_every_tenant(steps: list[tuple[object, ...]]) -> None:
    """Offers, sends (ok or failed) in any order: once everything owed
    has gone out, the broker (the max of every confirmed message) has, per tenant, the
    largest Ver ever offered."""
    book = CheckpointBook()
    broker: dict[str, int] = {}
    offered: dict[str, int] = {}
    for step in steps:
        if step[0] == "offer":
            tenant, ver = str(step[1]), int(step[2])  # type: ignore[call-overload]
            book.offer(tenant, ver)
            offered[tenant] = max(offered.get(tenant, -1), ver)
        else:
            ok = bool(step[1])
            batch = book.take()
            if ok:
                merge(broker, batch)
                book.confirmed()
            else:
                book.failed()
        assert book.owed == sum(1 for t in offered if broker.get(t, -1) < offered[t])
    while not book.idle:
        merge(broker, book.take())
        book.confirmed()
    assert broker == offered
