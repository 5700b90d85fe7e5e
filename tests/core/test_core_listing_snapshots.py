"""The api2 listing snapshot format: round trip, authentication before parsing, the
fingerprint check, the unpack bound, the newest kept. Pure, no I/O."""

from __future__ import annotations

import hashlib
import json
import zlib

from relay.core.envelope import Refused, sign
from relay.core.listing import StoredMember, fingerprint
from relay.core.listing_snapshots import (
    KIND,
    MAX_UNPACKED,
    ListingSnapshot,
    Malformed,
    decode,
    encode,
    newest,
    open_message,
)

KEY = b"deployment-secret-0123456789"
AT = 1_765_000_000_000


def members(n: int) -> dict[str, StoredMember]:
    out = {}
    for i in range(n):
        alias = f"user{i:05d}@company-domain.example.com"
        out[alias] = StoredMember(alias, hashlib.sha256(alias.encode()).hexdigest()[:32])
    return out


def signed(body: bytes, key: bytes = KEY) -> str:
    return sign(KIND, body, secret=key, at_ms=AT)


def test_a_snapshot_round_trips_with_its_fingerprint_and_aliases() -> None:
    rows = members(3) | {"ann@x.test": StoredMember("Ann@X.test", "a" * 32)}
    body = encode("acme", rows, at_ms=AT)
    opened = open_message(body, signed(body), tenant="acme", secrets=[KEY])
    assert isinstance(opened, ListingSnapshot)
    assert opened.members == rows and opened.at_ms == AT
    assert opened.fingerprint == fingerprint({k: m.digest for k, m in rows.items()})


def test_a_snapshot_signed_with_another_secret_or_kind_is_refused() -> None:
    body = encode("acme", members(2), at_ms=AT)
    assert open_message(body, signed(body, b"another-secret-0123456789"), tenant="acme",
                        secrets=[KEY]) == Refused("bad signature")  # fmt: skip
    checkpoint = sign("checkpoint", body, secret=KEY, at_ms=AT)
    assert open_message(body, checkpoint, tenant="acme", secrets=[KEY]) == Refused("bad signature")
    assert open_message(body, None, tenant="acme", secrets=[KEY]) == Refused("unsigned")


def test_a_signed_snapshot_of_another_tenant_or_with_a_wrong_fingerprint_is_malformed() -> None:
    body = encode("other", members(2), at_ms=AT)
    opened = open_message(body, signed(body), tenant="acme", secrets=[KEY])
    assert isinstance(opened, Malformed) and "other" in opened.reason
    data = json.loads(zlib.decompress(body))
    data["members"] = data["members"][:1]  # cut: the fingerprint no longer matches
    cut = zlib.compress(json.dumps(data).encode())
    assert decode(cut) == Malformed("fingerprint does not match the members")
    assert isinstance(decode(b"not zlib"), Malformed)
    assert isinstance(decode(zlib.compress(b"[1, 2]")), Malformed)
    bad_digest = dict(data, members=[["a@x.test", "XYZ"]])
    assert isinstance(decode(zlib.compress(json.dumps(bad_digest).encode())), Malformed)
    wrong_alias = dict(data, members=[["a@x.test", "a" * 32, "b@x.test"]])
    assert isinstance(decode(zlib.compress(json.dumps(wrong_alias).encode())), Malformed)


def test_a_body_that_unpacks_beyond_the_bound_is_refused_unread() -> None:
    bomb = zlib.compress(b" " * (MAX_UNPACKED + 1), 9)
    assert decode(bomb) == Malformed(f"unpacks to more than {MAX_UNPACKED} bytes")


def test_the_newest_by_commit_time_is_kept() -> None:
    a = ListingSnapshot("acme", 1000, 1, {})
    b = ListingSnapshot("acme", 3000, 2, {})
    c = ListingSnapshot("acme", 2000, 3, {})
    assert newest([a, b, c]) is b
    assert newest([]) is None


def test_ten_thousand_members_pack_well_under_the_broker_message_limit() -> None:
    rows = members(10_000)
    raw = sum(len(k) + len(m.digest) for k, m in rows.items())
    body = encode("acme", rows, at_ms=AT)
    # Measured: 0.76 MB of JSON -> 0.235 MB packed (the digests hardly compress).
    assert len(body) < raw * 0.6
    assert len(body) < 1024 * 1024  # RabbitMQ's default limit is 16 MiB (4.x)
    opened = decode(body)
    assert isinstance(opened, ListingSnapshot) and len(opened.members) == 10_000
