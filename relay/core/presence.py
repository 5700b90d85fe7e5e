"""Presence messages: what one replica tells the others, and what a reader accepts.

Where it sits: :class:`relay.runtime.leases.LeaseManager` publishes a presence message
every tick on ``<prefix>.presence`` and reads everyone's. Anyone with publish rights on
the vhost can put a message there too, and presence decides where the gateway forwards
a client's request (with its ``Authorization`` header), so a message is acted on only
when it passes :func:`read_presence`:

- it is signed with the deployment secret (:mod:`relay.core.envelope`, kind
  ``presence``) and not older than ``max_age`` (the presence timeout plus a clock-skew
  margin): anything else is :class:`Refused` with a low-cardinality reason;
- its replica id is a DNS label (RFC 1123: ``a-z``, ``0-9``, ``-``, at most 63
  characters), because the gateway builds a peer URL from it;
- its fields have the right types.

A valid message from a replica of *another shard space* is not refused but carries
another :func:`fingerprint`: the caller counts it as a conflict, never as a member.

Pure: no I/O, no clock (the caller passes ``now_ms``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from relay.core.envelope import HEADER, Refused, sign, verify

__all__ = [
    "CONFLICT_MEMORY",
    "HEADER",
    "KIND",
    "REASONS",
    "Conflict",
    "ConflictBook",
    "Presence",
    "Refused",
    "encode_presence",
    "fingerprint",
    "foreign_deployment",
    "mismatch",
    "read_presence",
    "valid_replica_id",
]

KIND = "presence"

#: Every reason a presence message can be refused for (the metric's label values).
REASONS: tuple[str, ...] = (
    "unsigned",
    "malformed",
    "bad signature",
    "stale",
    "invalid body",
    "invalid replica id",
)

#: How long a conflict (another deployment, another shard space) is remembered after its
#: last message (seconds), so readiness does not flap with every tick.
CONFLICT_MEMORY = 30.0

_DNS_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def valid_replica_id(value: object) -> bool:
    """Whether ``value`` is a DNS label (RFC 1123): lower-case letters, digits and
    inner hyphens, 1 to 63 characters. Safe to put in a host name."""
    return isinstance(value, str) and _DNS_LABEL.fullmatch(value) is not None


def fingerprint(*, shards: int, prefix: str, tenants: Collection[str]) -> str:
    """What two replicas must agree on to share shards: the shard count (lease ``n`` means
    the same tenants), the prefix (the same locks) and the set of tenant names (the same
    tenants hash into the shards). Order-free; 16 hex characters."""
    text = json.dumps(["v1", shards, prefix, sorted(set(tenants))], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Presence:
    """One accepted presence message."""

    replica: str
    shards: int
    owned: frozenset[int]
    leaving: bool
    fingerprint: str
    sent_ms: int


def encode_presence(
    *,
    replica: str,
    shards: int,
    owned: Collection[int],
    leaving: bool,
    fingerprint: str,
    secret: bytes,
    now_ms: int,
) -> tuple[bytes, str]:
    """The body and the :data:`HEADER` value of one presence message."""
    body = json.dumps(
        {
            "replica": replica,
            "shards": shards,
            "owned": sorted(owned),
            "leaving": leaving,
            "fingerprint": fingerprint,
        },
        separators=(",", ":"),
    ).encode()
    return body, sign(KIND, body, secret=secret, at_ms=now_ms)


def read_presence(
    body: bytes,
    header: object,
    *,
    secrets: Sequence[bytes],
    now_ms: int,
    max_age_ms: int,
) -> Presence | Refused:
    """The message, when it is authentic, fresh and well formed; else why not."""
    sent = verify(KIND, body, header, secrets=secrets, now_ms=now_ms, max_age_ms=max_age_ms)
    if isinstance(sent, Refused):
        return sent
    try:
        data: Any = json.loads(body)
        replica = data["replica"]
        shards = data["shards"]
        owned = data["owned"]
        leaving = data["leaving"]
        print_ = data["fingerprint"]
    except (ValueError, KeyError, TypeError):
        return Refused("invalid body")
    if not valid_replica_id(replica):
        return Refused("invalid replica id")
    if (
        not _is_int(shards)
        or shards < 1
        or not isinstance(owned, list)
        or not all(_is_int(s) and 0 <= s < shards for s in owned)
        or not isinstance(leaving, bool)
        or not isinstance(print_, str)
        or len(print_) > 64
    ):
        return Refused("invalid body")
    return Presence(replica, shards, frozenset(owned), leaving, print_, sent)


def mismatch(read: Presence, *, shards: int, fingerprint: str) -> tuple[str, bool] | None:
    """``None`` when ``read`` comes from our shard space; else what to say about it and
    whether it fails readiness at once (another shard count: lease ``n`` would mean other
    tenants) or only after a grace (another tenant set: a rolling change looks so)."""
    if read.shards != shards:
        what = (
            f"replica {read.replica!r} runs {read.shards} shards, this one {shards}: "
            "the sharding configuration must be the same everywhere"
        )
        return what, True
    if read.fingerprint != fingerprint:
        what = (
            f"replica {read.replica!r} has another sharding configuration (fingerprint "
            f"{read.fingerprint}, ours {fingerprint}): shards, prefix and the set of "
            "enabled tenants must be the same everywhere"
        )
        return what, False
    return None


def foreign_deployment(prefix: str) -> str:
    """What to say about presence signed with another secret on our ``prefix``."""
    return (
        f"another deployment uses prefix {prefix!r} (presence signed with another secret): "
        "give each deployment its own [sharding] prefix, or the same secret if it is one "
        "deployment"
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class Conflict:
    """A party on our presence exchange that must not share our shards: ``what`` says
    who (safe to show: no secret, no body); ``since`` and ``last`` are clock readings."""

    what: str
    since: float
    last: float
    immediate: bool  # fails readiness at once (another deployment, another shard count)


class ConflictBook:
    """Conflicts heard lately, for status and readiness. Pure: the caller passes ``now``
    (monotonic seconds).

    A conflict is forgotten ``memory`` seconds after its last message, so readiness does
    not flap with every tick. One that is not ``immediate`` (a peer with another tenant
    set: a rolling change of the configuration looks like that for a while) fails
    readiness only once it has lasted ``grace`` seconds.
    """

    def __init__(self, *, memory: float, grace: float) -> None:
        self._memory = memory
        self._grace = grace
        self._book: dict[str, Conflict] = {}

    def note(self, key: str, what: str, *, immediate: bool, now: float) -> bool:
        """Record one message of conflict ``key``; True when it is new (or says
        something new): log it at once."""
        known = self._book.get(key)
        fresh = known is None or known.what != what
        since = now if fresh or known is None else known.since
        self._book[key] = Conflict(what, since, now, immediate)
        return fresh

    def clear(self, key: str) -> None:
        self._book.pop(key, None)

    def active(self, now: float) -> list[str]:
        """What conflicts now, oldest first."""
        self._forget(now)
        return [c.what for c in sorted(self._book.values(), key=lambda c: c.since)]

    def trouble(self, now: float) -> str | None:
        """The conflict that should fail readiness now, if any."""
        self._forget(now)
        for conflict in sorted(self._book.values(), key=lambda c: c.since):
            if conflict.immediate or now - conflict.since >= self._grace:
                return conflict.what
        return None

    def _forget(self, now: float) -> None:
        for key, conflict in list(self._book.items()):
            if now - conflict.last > self._memory:
                del self._book[key]
