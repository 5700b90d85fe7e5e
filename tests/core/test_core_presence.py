"""Presence messages are input, not truth: only signed, fresh, well-formed messages with a
DNS-label replica id are read; the fingerprint tells shard spaces apart."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.core.envelope import sign
from relay.core.presence import (
    ConflictBook,
    Presence,
    Refused,
    encode_presence,
    fingerprint,
    read_presence,
    valid_replica_id,
)

SECRET = b"deployment-secret-0123456789"
OTHER = b"another-deployment-secret-987"
NOW = 1_800_000_000_000


def message(**overrides: object) -> tuple[bytes, str]:
    fields: dict[str, object] = {
        "replica": "relay-0",
        "shards": 16,
        "owned": [1, 2],
        "leaving": False,
        "fingerprint": "f" * 16,
        "secret": SECRET,
        "now_ms": NOW,
    }
    fields.update(overrides)
    return encode_presence(**fields)  # type: ignore[arg-type]


def read(body: bytes, header: object, *, now_ms: int = NOW) -> Presence | Refused:
    return read_presence(body, header, secrets=[SECRET], now_ms=now_ms, max_age_ms=13_000)


def test_a_signed_fresh_message_is_read() -> None:
    body, header = message()
    assert read(body, header) == Presence("relay-0", 16, frozenset({1, 2}), False, "f" * 16, NOW)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("unsigned", "unsigned"),
        ("other secret", "bad signature"),
        ("garbage header", "malformed"),
        ("old", "stale"),
        ("future", "stale"),
        ("tampered", "bad signature"),
    ],
)
def test_forged_or_replayed_messages_are_refused(case: str, reason: str) -> None:
    body, header = message()
    now = NOW
    if case == "unsigned":
        got = read(body, None)
    elif case == "other secret":
        got = read(*message(secret=OTHER))
    elif case == "garbage header":
        got = read(body, "v1,abc")
    elif case == "old":
        got = read(body, header, now_ms=now + 13_001)
    elif case == "future":
        got = read(body, header, now_ms=now - 13_001)
    else:
        got = read(body.replace(b"relay-0", b"relay-9"), header)
    assert got == Refused(reason)


@pytest.mark.parametrize(
    "replica", ["127.0.0.1:8080/#", "Relay-0", "-relay", "relay-", "a" * 64, "", "a_b", "a.b"]
)
def test_a_replica_id_that_is_not_a_dns_label_is_refused_even_when_signed(replica: str) -> None:
    assert not valid_replica_id(replica)
    assert read(*message(replica=replica)) == Refused("invalid replica id")


@pytest.mark.parametrize(
    "body",
    [
        {"replica": "r", "shards": 16, "owned": [16], "leaving": False, "fingerprint": "x"},
        {"replica": "r", "shards": 0, "owned": [], "leaving": False, "fingerprint": "x"},
        {"replica": "r", "shards": 16, "owned": [True], "leaving": False, "fingerprint": "x"},
        {"replica": "r", "shards": 16, "owned": [], "leaving": 1, "fingerprint": "x"},
        {"replica": "r", "shards": 16, "owned": [], "leaving": False},
        ["not", "an", "object"],
    ],
)
def test_a_signed_message_of_the_wrong_shape_is_refused(body: object) -> None:
    raw = json.dumps(body).encode()
    header = sign("presence", raw, secret=SECRET, at_ms=NOW)
    assert read(raw, header) == Refused("invalid body")


def test_a_checkpoint_signature_does_not_pass_as_presence() -> None:
    body, _ = message()
    header = sign("checkpoint", body, secret=SECRET, at_ms=NOW)
    assert read(body, header) == Refused("bad signature")


def test_rotation_any_configured_secret_verifies() -> None:
    body, header = message(secret=OTHER)
    got = read_presence(body, header, secrets=[SECRET, OTHER], now_ms=NOW, max_age_ms=1000)
    assert isinstance(got, Presence)


@given(st.from_regex(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", fullmatch=True))
def test_every_dns_label_is_a_valid_replica_id(label: str) -> None:
    assert valid_replica_id(label)


def test_the_fingerprint_covers_shards_prefix_and_the_tenant_set_not_its_order() -> None:
    base = fingerprint(shards=16, prefix="exmail.relay", tenants=["acme", "globex"])
    assert base == fingerprint(shards=16, prefix="exmail.relay", tenants=["globex", "acme"])
    assert base != fingerprint(shards=32, prefix="exmail.relay", tenants=["acme", "globex"])
    assert base != fingerprint(shards=16, prefix="other", tenants=["acme", "globex"])
    assert base != fingerprint(shards=16, prefix="exmail.relay", tenants=["acme"])
    # No separator trick: one tenant named "a\nb" is not the two tenants a and b.
    assert fingerprint(shards=16, prefix="p", tenants=["a\nb"]) != fingerprint(
        shards=16, prefix="p", tenants=["a", "b"]
    )


def test_conflicts_fail_readiness_at_once_or_after_the_grace_and_are_forgotten() -> None:
    book = ConflictBook(memory=30, grace=300)
    assert book.note("peer:a", "tenant set differs", immediate=False, now=0)
    assert not book.note("peer:a", "tenant set differs", immediate=False, now=1)
    assert book.active(1) == ["tenant set differs"]
    assert book.trouble(1) is None, "a rolling change passes within the grace"
    for t in range(2, 301, 10):
        book.note("peer:a", "tenant set differs", immediate=False, now=t)
    assert book.trouble(300) == "tenant set differs"
    book.note("foreign", "another deployment", immediate=True, now=300)
    assert book.trouble(300) == "tenant set differs"  # the oldest first
    book.clear("peer:a")
    assert book.trouble(300) == "another deployment"
    assert book.active(331) == [], "forgotten after `memory` without a message"
    assert book.trouble(331) is None
