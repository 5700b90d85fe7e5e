"""Checkpoint records, without a broker: the message format round-trips, anything else
is malformed (never an exception), and the book owes exactly the newest Ver per tenant
whatever order offers, sends, confirms and failures come in."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.core.checkpoints import (
    CheckpointBook,
    Malformed,
    Marker,
    Vers,
    chunks,
    decode,
    encode,
    encode_marker,
    merge,
)

tenants = st.text(min_size=1, max_size=20)
vers = st.dictionaries(tenants, st.integers(min_value=0, max_value=2**62), max_size=30)


@given(vers)
def test_vers_round_trip(v: dict[str, int]) -> None:
    assert decode(encode(v)) == Vers(v)


@given(st.text(max_size=40))
def test_markers_round_trip(marker: str) -> None:
    assert decode(encode_marker(marker)) == Marker(marker)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\xff\xfe",
        b"not json",
        b"[]",
        b"42",
        b'{"vers": []}',
        b'{"vers": {"a": "12"}}',
        b'{"vers": {"a": -1}}',
        b'{"vers": {"a": true}}',
        b'{"vers": {"a": 1.5}}',
        b'{"vers": {"": 1}}',
        b'{"vers": {"a": 1}, "extra": 1}',
        b'{"marker": 5}',
        b'{"other": "thing"}',
    ],
)
def test_anything_else_is_malformed(body: bytes) -> None:
    assert isinstance(decode(body), Malformed)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_decode_never_raises(body: bytes) -> None:
    assert isinstance(decode(body), Vers | Marker | Malformed)


@given(json_values)
def test_wrapped_garbage_never_raises(value: object) -> None:
    for wrapped in ({"vers": value}, {"marker": value}, {"vers": {"a": value}}):
        assert isinstance(decode(json.dumps(wrapped).encode()), Vers | Marker | Malformed)


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


@given(vers, st.integers(min_value=1, max_value=7))
def test_chunks_split_without_loss(v: dict[str, int], size: int) -> None:
    parts = list(chunks(v, size))
    assert all(0 < len(p) <= size for p in parts)
    assert {t: x for p in parts for t, x in p.items()} == v
    assert sum(len(p) for p in parts) == len(v)


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


def test_a_snapshot_sends_everything_known_and_settles_what_was_owed() -> None:
    book = CheckpointBook()
    book.offer("a", 1)
    assert book.take() == {"a": 1}
    book.confirmed()
    book.learn({"c": 9, "a": 0})  # read from the broker: known, not owed
    assert book.idle
    book.offer("b", 4)
    assert book.take(snapshot=True) == {"a": 1, "b": 4, "c": 9}
    book.confirmed()
    assert book.idle


ops = st.lists(
    st.one_of(
        st.tuples(st.just("offer"), st.sampled_from("abc"), st.integers(0, 20)),
        st.tuples(st.just("send"), st.booleans(), st.booleans()),
    ),
    max_size=60,
)


@given(ops)
def test_the_broker_ends_with_the_newest_of_every_tenant(steps: list[tuple[object, ...]]) -> None:
    """Offers, sends (ok or failed, snapshot or not) in any order: once everything owed
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
            ok, snapshot = bool(step[1]), bool(step[2])
            batch = book.take(snapshot=snapshot)
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
