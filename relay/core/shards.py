"""Shards and the lease planner: which shards a replica should try to hold.

Where it sits: tenants hash into a fixed number of shards (:func:`shard_of`); each shard
is owned by the replica holding its lease, an exclusive queue on the broker
(:mod:`relay.runtime.leases` moves those bytes). This module only decides what to *want*.

The planner is advice, never a lock. Two replicas that disagree about who is alive (a
late presence message) may both want a shard; the broker lets only one declare its
lease queue and the other sees ``RESOURCE_LOCKED``. So the planner can be simple and
local: it never has to be right for ownership to be safe, only eventually right for
the shards to spread evenly.

- :func:`fair_share` is ``ceil(shards / live)``: ``live`` replicas with that many each
  always cover every shard.
- :func:`plan` releases the highest-numbered extras above the fair share, or names the
  shards worth trying (free, or held by a replica no longer seen alive) and how many of
  them to take.
- :func:`preference` orders shards per replica by rendezvous hashing: a shard is first
  tried by the live replica that scores highest on it, so replicas that start together
  aim at disjoint shards first instead of racing for shard 0.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "DEFAULT_SHARDS",
    "LeaseChange",
    "Plan",
    "ReleaseReason",
    "fair_share",
    "plan",
    "preference",
    "score",
    "shard_of",
]

DEFAULT_SHARDS = 16

ReleaseReason = Literal["balance", "shutdown", "connection_lost", "unhealthy"]


def shard_of(tenant: str, shards: int) -> int:
    """The shard of ``tenant``: stable, and adding a tenant never moves another one."""
    if shards < 1:
        raise ValueError("shards must be at least 1")
    return zlib.crc32(tenant.encode("utf-8")) % shards


def fair_share(shards: int, live: int) -> int:
    """How many shards one of ``live`` replicas may hold: ``ceil(shards / live)``.

    ``live`` below 1 counts as 1: the replica asking is alive.
    """
    if shards < 1:
        raise ValueError("shards must be at least 1")
    live = max(live, 1)
    return -(-shards // live)


def score(replica: str, shard: int) -> int:
    """The rendezvous score of ``replica`` for ``shard`` (64 bits, the same everywhere)."""
    digest = hashlib.blake2b(f"{replica}\x00{shard}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def preference(replica: str, live: Collection[str], shards: int) -> tuple[int, ...]:
    """Every shard, in the order ``replica`` should try them.

    First the shards on which ``replica`` scores highest among ``live`` (its natural
    shards; those of two replicas with the same view are disjoint), then the rest; each
    group by descending score of ``replica``, so its order differs from every other's.
    """
    others = [r for r in live if r != replica]

    def key(shard: int) -> tuple[bool, int]:
        mine = score(replica, shard)
        natural = all((mine, replica) > (score(o, shard), o) for o in others)
        return (not natural, -mine)

    return tuple(sorted(range(shards), key=key))


@dataclass(frozen=True, slots=True)
class Plan:
    """What one replica should do now.

    ``release`` names shards to give back, in order. Otherwise ``acquire`` lists the
    shards worth trying, in order, of which at most ``room`` should be taken: a try may
    fail (the broker says someone holds it), so the caller goes down the list until it
    has taken ``room``.
    """

    release: tuple[int, ...] = ()
    acquire: tuple[int, ...] = ()
    room: int = 0

    @property
    def idle(self) -> bool:
        return not self.release and not (self.room and self.acquire)


@dataclass(frozen=True, slots=True)
class LeaseChange:
    """A shard was acquired, or released for ``reason``."""

    shard: int
    kind: Literal["acquired", "released"]
    reason: ReleaseReason | None = None


def plan(
    *,
    me: str,
    live: Iterable[str],
    held: Collection[int],
    shards: int,
    known: Mapping[int, str] | None = None,
) -> Plan:
    """What ``me`` should release or try to acquire.

    ``live`` are the replicas seen alive (``me`` counts whether listed or not), ``held``
    the shards ``me`` holds, ``known`` who else is said to hold which shard (presence
    messages; possibly stale). A shard known held by a live replica is not tried; one
    known held by a replica no longer seen alive is tried, since its lease is about to
    be freed by the broker, and trying early costs one refused declare.
    """
    if shards < 1:
        raise ValueError("shards must be at least 1")
    outside = [s for s in held if not 0 <= s < shards]
    if outside:
        raise ValueError(f"held shards out of range: {sorted(outside)}")
    alive = set(live) | {me}
    share = fair_share(shards, len(alive))
    mine = set(held)
    if len(mine) > share:
        extras = sorted(mine, reverse=True)[: len(mine) - share]
        return Plan(release=tuple(extras))
    room = share - len(mine)
    if room == 0:
        return Plan()
    taken = {s for s, owner in (known or {}).items() if owner != me and owner in alive}
    order = preference(me, alive, shards)
    candidates = tuple(s for s in order if s not in mine and s not in taken)
    return Plan(acquire=candidates, room=room if candidates else 0)
