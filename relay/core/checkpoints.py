"""Checkpoint records on the broker: what is sent, what is read back, what is owed.

Where it sits: :class:`relay.runtime.checkpoints.CheckpointStream` publishes every
committed Ver to a RabbitMQ stream so that the next owner of a shard can resume from
it, and reads the stream back on takeover. This module holds the parts without I/O:
the message format (:func:`encode`, :func:`encode_marker`, :func:`decode`) and the
ledger of what is still owed to the broker (:class:`CheckpointBook`).

Ver only grows for a tenant, so "the newest" is the largest: two replicas publishing
for one tenant (an old owner not yet fenced, a new one) cannot make a reader go
backwards, and a reader keeps the maximum of everything it sees (:func:`merge`).

A message carries many tenants at once: ``{"vers": {"<tenant>": <ver>, ...}}``. A
reader appends ``{"marker": "<id>"}`` before it reads, and stops at its own marker: it
then has everything confirmed before it asked. Anything else on the stream (foreign
JSON, a tenant that is not a string, a Ver that is not a non-negative integer) decodes
as :class:`Malformed` and is skipped whole.

The book coalesces: only the newest Ver per tenant is owed, however often a tenant
commits between two sends, and a batch that failed is owed again unless a newer Ver
arrived meanwhile.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CheckpointBook",
    "Malformed",
    "Marker",
    "Vers",
    "chunks",
    "decode",
    "encode",
    "encode_marker",
    "merge",
]


@dataclass(frozen=True, slots=True)
class Vers:
    """Checkpoints read from one message: the Ver of each tenant it names."""

    vers: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class Marker:
    """A reader's end-of-read mark."""

    marker: str


@dataclass(frozen=True, slots=True)
class Malformed:
    """A message that is not ours, or not readable: skipped whole."""

    reason: str


def encode(vers: Mapping[str, int]) -> bytes:
    return json.dumps({"vers": dict(vers)}, separators=(",", ":"), sort_keys=True).encode()


def encode_marker(marker: str) -> bytes:
    return json.dumps({"marker": marker}).encode()


def decode(body: bytes) -> Vers | Marker | Malformed:
    """What one stream message says; never raises."""
    try:
        data: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return Malformed("not JSON")
    if not isinstance(data, dict):
        return Malformed("not an object")
    if set(data) == {"marker"} and isinstance(data["marker"], str):
        return Marker(data["marker"])
    vers = data.get("vers")
    if set(data) != {"vers"} or not isinstance(vers, dict):
        return Malformed("neither vers nor marker")
    for tenant, ver in vers.items():
        # bool is an int to Python, never a Ver.
        if not tenant or type(ver) is not int or ver < 0:
            return Malformed(f"bad entry for {tenant[:64]!r}")
    return Vers(vers)


def merge(into: dict[str, int], vers: Mapping[str, int]) -> None:
    """Keep the largest Ver per tenant."""
    for tenant, ver in vers.items():
        if ver > into.get(tenant, -1):
            into[tenant] = ver


def chunks(vers: Mapping[str, int], size: int) -> Iterator[dict[str, int]]:
    """``vers`` split into dicts of at most ``size`` tenants (none when empty)."""
    if size < 1:
        raise ValueError("size must be at least 1")
    items = sorted(vers.items())
    for start in range(0, len(items), size):
        yield dict(items[start : start + size])


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
        """Vers read from the broker: known (and snapshotted again), not owed."""
        merge(self._known, vers)

    def take(self, *, snapshot: bool = False) -> dict[str, int]:
        """What to send now: the owed Vers, or with ``snapshot`` every known one (which
        covers the owed ones). Everything owed is in flight until the answer."""
        if self._in_flight:
            raise RuntimeError("a batch is already in flight")
        self._in_flight, self._pending = self._pending, {}
        return dict(self._known if snapshot else self._in_flight)

    def confirmed(self) -> None:
        self._in_flight = {}

    def failed(self) -> None:
        """The batch in flight is owed again, except where a newer Ver is owed already."""
        for tenant, ver in self._in_flight.items():
            if ver > self._pending.get(tenant, -1):
                self._pending[tenant] = ver
        self._in_flight = {}
