"""Whether a replica is fit to hold shard leases: a window over its health samples.

Where it sits: in lease mode the relay service samples, about once a second, the
conditions a shard owner needs (its journal takes writes; its broker link for
deliveries is up) and feeds them here; the lease manager asks :meth:`HealthWindow.unfit`
on every tick and, while it names a reason, holds no shard and takes none
(docs/leases.md, "Health releases leases"). Pure: time is passed in.

A condition makes the replica unfit once it has failed *continuously* for
``release_after`` seconds: a full disk or a broker away for that long is not a blip
worth a handoff, and one good sample in between starts the count again. The replica is
fit again as soon as no condition fails any more (it rejoins; if the fault comes back,
the window runs again before the next release, so a flapping condition costs at most
one handoff per ``release_after``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["HealthWindow"]


@dataclass(slots=True)
class HealthWindow:
    """Failing conditions and since when; ``unfit(now)`` is the verdict."""

    release_after: float
    _failing: dict[str, tuple[float, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.release_after < 0:
            raise ValueError("release_after must not be negative")

    def observe(self, condition: str, problem: str | None, now: float) -> None:
        """One sample of ``condition``: ``problem`` is why it fails now, ``None`` if fine."""
        if problem is None:
            self._failing.pop(condition, None)
            return
        since = self._failing.get(condition, (now, problem))[0]
        self._failing[condition] = (since, problem)

    def failing(self, now: float) -> dict[str, float]:
        """How long each failing condition has failed, in seconds."""
        return {name: max(now - since, 0.0) for name, (since, _) in self._failing.items()}

    def unfit(self, now: float) -> str | None:
        """Why this replica must hold no shard now (the longest failing condition past
        ``release_after``), or ``None``."""
        due = [
            (now - since, name, problem)
            for name, (since, problem) in self._failing.items()
            if now - since >= self.release_after
        ]
        if not due:
            return None
        seconds, name, problem = max(due)
        return f"{name} {problem} for {seconds:.0f} s"
