"""Checkpoint snapshots on the broker: what is sent, what is read back, what is owed.

Where it sits: :class:`relay.runtime.checkpoints.CheckpointStore` keeps, per shard, a
few signed snapshots of the shard's newest Vers in a queue on the broker, so that the
next owner of a shard can resume from them, and reads them back on takeover. This
module holds the parts without I/O: the message format (:func:`encode`,
:func:`decode`), the check of one received message (:func:`open_message`: signature,
shape, shard) and the ledger of what is still owed to the broker
(:class:`CheckpointBook`).

Ver only grows for a tenant, so "the newest" is the largest: two replicas publishing
for one shard (an old owner not yet fenced, a new one) cannot make a reader go
backwards while a newer snapshot is still kept, and a reader keeps the maximum of
everything it sees (:func:`merge`).

A message is one shard's whole snapshot: ``{"shard": 3, "vers": {"<tenant>": <ver>,
...}}``, signed with the deployment secret as a ``checkpoint`` message
(:mod:`relay.core.envelope`, header ``x-relay-auth``). Anything unsigned or signed
with another secret is :class:`relay.core.envelope.Refused`; anything signed but not
of this shape (another shard, a Ver that is not a non-negative integer) is
:class:`Malformed`. Both are skipped whole, never merged.

The book coalesces: only the newest Ver per tenant is owed, however often a tenant
commits between two sends, and a batch that failed is owed again unless a newer Ver
arrived meanwhile.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from relay.core.envelope import Refused, verify

__all__ = [
    "KIND",
    "CheckpointBook",
    "Malformed",
    "Snapshot",
    "decode",
    "encode",
    "merge",
    "open_message",
]

#: The envelope kind of checkpoint messages: a presence message cannot pass for one.
KIND: Final = "checkpoint"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One message's content: the Ver of each tenant of ``shard`` it names."""

    shard: int
    vers: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class Malformed:
    """A signed message that is not a snapshot of the expected shard: skipped whole."""

    reason: str


def encode(shard: int, vers: Mapping[str, int]) -> bytes:
    return json.dumps(
        {"shard": shard, "vers": dict(vers)}, separators=(",", ":"), sort_keys=True
    ).encode()


def decode(body: bytes) -> Snapshot | Malformed:
    """What one message says; never raises."""
    try:
        data: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return Malformed("not JSON")
    if not isinstance(data, dict) or set(data) != {"shard", "vers"}:
        return Malformed("not a snapshot")
    shard, vers = data["shard"], data["vers"]
    if type(shard) is not int or shard < 0 or not isinstance(vers, dict):
        return Malformed("not a snapshot")
    for tenant, ver in vers.items():
        # bool is an int to Python, never a Ver.
        if not tenant or type(ver) is not int or ver < 0:
            return Malformed(f"bad entry for {tenant[:64]!r}")
    return Snapshot(shard, vers)


def open_message(
    body: bytes, header: object, *, shard: int, secrets: Sequence[bytes]
) -> Snapshot | Refused | Malformed:
    """A received message of ``shard``'s queue, authenticated and decoded; never raises.

    The signature is checked first and over the raw body: nothing unauthenticated is
    even parsed. No age limit: an old snapshot replayed holds older Vers, which the
    maximum ignores.
    """
    sent = verify(KIND, body, header, secrets=secrets)
    if isinstance(sent, Refused):
        return sent
    decoded = decode(body)
    if isinstance(decoded, Snapshot) and decoded.shard != shard:
        return Malformed(f"a snapshot of shard {decoded.shard} in shard {shard}'s queue")
    return decoded


def merge(into: dict[str, int], vers: Mapping[str, int]) -> None:
    """Keep the largest Ver per tenant."""
    for tenant, ver in vers.items():
        if ver > into.get(tenant, -1):
            into[tenant] = ver


class CheckpointBook:
    """The newest Ver per tenant this replica knows, and which of them the broker still
    lacks. One batch is in flight at a time: :meth:`take`, then :meth:`confirmed` or
    :meth:`failed`."""

    def __init__(self) -> None:
        self._known: dict[str, int] = {}
        self._pending: dict[str, int] = {}
        self._in_flight: dict[str, int] = {}

    @property
    def idle(self) -> bool:
        """Nothing owed: every Ver offered so far is confirmed by the broker."""
        return not self._pending and not self._in_flight

    @property
    def owed(self) -> int:
        """Tenants whose newest Ver is not confirmed yet."""
        return len(self._pending.keys() | self._in_flight.keys())

    @property
    def known(self) -> Mapping[str, int]:
        return self._known

    def offer(self, tenant: str, ver: int) -> bool:
        """Owe ``ver`` for ``tenant`` unless a Ver as new is already known; True if owed."""
        if ver <= self._known.get(tenant, -1):
            return False
        self._known[tenant] = ver
        self._pending[tenant] = ver
        return True

    def learn(self, vers: Mapping[str, int]) -> None:
        """Vers read from the broker: known (part of the next snapshots), not owed."""
        merge(self._known, vers)

    def take(self) -> dict[str, int]:
        """What is owed now; in flight until :meth:`confirmed` or :meth:`failed`."""
        if self._in_flight:
            raise RuntimeError("a batch is already in flight")
        self._in_flight, self._pending = self._pending, {}
        return dict(self._in_flight)

    def confirmed(self) -> None:
        self._in_flight = {}

    def failed(self) -> None:
        """The batch in flight is owed again, except where a newer Ver is owed already."""
        for tenant, ver in self._in_flight.items():
            if ver > self._pending.get(tenant, -1):
                self._pending[tenant] = ver
        self._in_flight = {}
