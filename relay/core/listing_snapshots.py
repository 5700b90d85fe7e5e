"""Listing snapshots on the broker: an api2 tenant's stored listing, signed and packed,
so the next owner of its shard diffs against the old owner's last committed listing.
Pure code, no I/O.

Where it sits: in lease mode each replica keeps the last listing in its own journal
(:mod:`relay.core.listing`); :class:`relay.runtime.listings.ListingStore` sends the
listing an owner committed to a per-tenant queue and the next owner reads it back
before its first poll (docs/leases.md, "Directory polls of api2 tenants"). This module
holds the message format (:func:`encode`, :func:`decode`) and the check of one received
message (:func:`open_message`: signature, size, shape, tenant, fingerprint).

A message is zlib-compressed JSON::

    {"tenant": "acme", "at_ms": 1765000000000, "fingerprint": 123,
     "members": [["ann@x.test", "<digest>"], ["bob@x.test", "<digest>", "Bob@x.test"]]}

one entry per member: its key (the address in lower case), its profile digest and,
only where it differs from the key, the address as listed. ``at_ms`` is when the owner
committed the listing (Unix milliseconds, its clock): a reader keeps the newest. The
fingerprint (:func:`relay.core.listing.fingerprint`) is recomputed from the entries and
must match, so a snapshot cut or changed on its way is refused whole. The body is
signed as compressed bytes with the deployment secret as a ``listing`` message
(:mod:`relay.core.envelope`): nothing unauthenticated is decompressed or parsed.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from relay.core.envelope import Refused, verify
from relay.core.listing import StoredMember, fingerprint

__all__ = [
    "KIND",
    "MAX_UNPACKED",
    "ListingSnapshot",
    "Malformed",
    "decode",
    "encode",
    "newest",
    "open_message",
]

#: The envelope kind: a checkpoint or presence message cannot pass for a listing.
KIND: Final = "listing"
#: A snapshot that unpacks to more than this is refused (about 200 000 members).
MAX_UNPACKED: Final = 64 * 1024 * 1024

_DIGEST = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True, slots=True)
class ListingSnapshot:
    """One tenant's committed listing as an owner sent it."""

    tenant: str
    at_ms: int  # when it was committed (the sender's clock)
    fingerprint: int
    members: Mapping[str, StoredMember]  # key (address in lower case) -> row


@dataclass(frozen=True, slots=True)
class Malformed:
    """A signed message that is not a valid snapshot of the expected tenant."""

    reason: str


def encode(tenant: str, members: Mapping[str, StoredMember], *, at_ms: int) -> bytes:
    """The compressed body of ``tenant``'s listing committed at ``at_ms``."""
    entries: list[list[str]] = []
    for key in sorted(members):
        member = members[key]
        entry = [key, member.digest]
        if member.alias != key:
            entry.append(member.alias)
        entries.append(entry)
    digests = {key: m.digest for key, m in members.items()}
    text = json.dumps(
        {
            "tenant": tenant,
            "at_ms": at_ms,
            "fingerprint": fingerprint(digests),
            "members": entries,
        },
        separators=(",", ":"),
    )
    return zlib.compress(text.encode("ascii"), 6)


def decode(body: bytes) -> ListingSnapshot | Malformed:
    """What one (authenticated) body says; never raises."""
    try:
        unpacker = zlib.decompressobj()
        text = unpacker.decompress(body, MAX_UNPACKED)
        if unpacker.unconsumed_tail:
            return Malformed(f"unpacks to more than {MAX_UNPACKED} bytes")
        if not unpacker.eof:
            return Malformed("not a complete zlib stream")
        data: Any = json.loads(text)
    except (zlib.error, ValueError, UnicodeDecodeError):
        return Malformed("not a packed snapshot")
    if not isinstance(data, dict) or set(data) != {"tenant", "at_ms", "fingerprint", "members"}:
        return Malformed("not a snapshot")
    tenant, at_ms, fp, entries = data["tenant"], data["at_ms"], data["fingerprint"], data["members"]
    if (
        not isinstance(tenant, str)
        or type(at_ms) is not int
        or at_ms < 0
        or type(fp) is not int
        or not isinstance(entries, list)
    ):
        return Malformed("not a snapshot")
    members: dict[str, StoredMember] = {}
    for entry in entries:
        if (
            not isinstance(entry, list)
            or len(entry) not in (2, 3)
            or not all(isinstance(part, str) for part in entry)
        ):
            return Malformed("bad entry")
        key, digest = entry[0], entry[1]
        alias = entry[2] if len(entry) == 3 else key
        if not key or key in members or _DIGEST.match(digest) is None:
            return Malformed(f"bad entry for {key[:64]!r}")
        if alias.strip().lower() != key:
            return Malformed(f"alias {alias[:64]!r} does not match its key")
        members[key] = StoredMember(alias, digest)
    if fingerprint({k: m.digest for k, m in members.items()}) != fp:
        return Malformed("fingerprint does not match the members")
    return ListingSnapshot(tenant, at_ms, fp, members)


def open_message(
    body: bytes, header: object, *, tenant: str, secrets: Sequence[bytes]
) -> ListingSnapshot | Refused | Malformed:
    """A received message of ``tenant``'s queue, authenticated and decoded; never raises.
    The signature is checked first, over the compressed body."""
    sent = verify(KIND, body, header, secrets=secrets)
    if isinstance(sent, Refused):
        return sent
    decoded = decode(body)
    if isinstance(decoded, ListingSnapshot) and decoded.tenant != tenant:
        return Malformed(f"a snapshot of {decoded.tenant[:64]!r} in {tenant!r}'s queue")
    return decoded


def newest(snapshots: Sequence[ListingSnapshot]) -> ListingSnapshot | None:
    """The snapshot committed last (by ``at_ms``; a tie goes to the one read last)."""
    best: ListingSnapshot | None = None
    for snapshot in snapshots:
        if best is None or snapshot.at_ms >= best.at_ms:
            best = snapshot
    return best
