"""The checkpoint seams: who commits Vers publishes them, who takes a shard reads them.

Where it sits: in lease mode a tenant's directory ``Ver`` must follow its shard from
replica to replica. Two small protocols say what that needs, so the code that depends
on it names the dependency instead of finding it behind another seam:

- :class:`CheckpointPublisher`: the listener (:class:`relay.runtime.listener.Listener`)
  hands every Ver it commits (and the one it resumes from) to it;
- :class:`CheckpointSource`: the shard runner (:class:`relay.runtime.ownership.ShardRunner`)
  reads a shard's newest Vers before its listeners start, and flushes before a handoff.

:class:`relay.runtime.checkpoints.CheckpointStore` is both, in lease mode (wired in
:mod:`relay.app.wiring`). :class:`NoCheckpoints` is both for static mode, where a
tenant never moves: it publishes nothing and knows nothing.

Exceptions: :class:`CheckpointUnavailable` (a read that failed or did not finish; the
caller waits and retries, it never takes "nothing" for an answer).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

__all__ = [
    "CheckpointPublisher",
    "CheckpointSource",
    "CheckpointUnavailable",
    "NoCheckpoints",
    "StoreHealth",
]


class CheckpointUnavailable(Exception):
    """The broker's checkpoints of a shard could not be read completely. The message
    says why (no secret, no URL); the shard's tenants wait until a read succeeds."""


class CheckpointPublisher(Protocol):
    """Takes every committed Ver. Never blocks and never raises."""

    def publish(self, tenant: str, ver: int) -> None:
        """``tenant``'s journal holds ``ver`` now (or resumes from it)."""
        ...


class CheckpointSource(Protocol):
    """The broker's copy of the tenants' checkpoints (the newest Ver seen committed)."""

    async def latest(self, shard: int, tenants: Sequence[str]) -> dict[str, int]:
        """The newest Ver known for each of ``tenants`` of ``shard`` (absent: none
        known, after a complete read). Raises :class:`CheckpointUnavailable` when the
        read fails or cannot finish."""
        ...

    async def flush(self, timeout: float) -> bool:  # noqa: ASYNC109 - a bound, never raised
        """Wait until every Ver published so far is on the broker (False: not in time)."""
        ...


class NoCheckpoints:
    """Static mode: no broker copy; every listener starts from its own journal's Ver."""

    def publish(self, tenant: str, ver: int) -> None:
        return None

    async def latest(self, shard: int, tenants: Sequence[str]) -> dict[str, int]:
        return {}

    async def flush(self, timeout: float) -> bool:  # noqa: ASYNC109 - a bound, never raised
        return True


class StoreHealth(Protocol):
    """What readiness, metrics and the status page read from the checkpoint store."""

    published: int
    refused: int
    malformed: int
    last_refused: str | None

    @property
    def connected(self) -> bool: ...

    @property
    def last_error(self) -> str | None: ...

    @property
    def down_since(self) -> float | None: ...

    @property
    def block_status(self) -> dict[str, str | float] | None: ...

    def queue_of(self, shard: int) -> str: ...
