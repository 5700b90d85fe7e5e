"""What the relay says about itself: readiness, liveness and the status document, typed.

Where it sits: :class:`relay.runtime.supervisor.RelayService` builds these values from its
components (each listener's :class:`ListenerStatus`, defined here and updated by the
listener in place; each drainer's counters, the journal's stats and counters);
:mod:`relay.ops.http` serves them as JSON and :mod:`relay.ops.page` renders them. Never
built from the Prometheus registry: metrics are one view of the components, this is another.

``to_json()`` emits every field by name, in order: these dataclasses *are* the
``/status.json`` contract (the tests pin the keys); :data:`OMIT_NONE` ones only when set.
:func:`build_status` is pure: it reads the components handed to it and does no I/O.
"""

from __future__ import annotations

import collections
import heapq
from collections.abc import Mapping, Sequence
from dataclasses import Field, dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

if TYPE_CHECKING:
    from relay.journal import Journal, JournalStats
    from relay.runtime.directory import PendingDirectory
    from relay.runtime.drainer import Drainer

__all__ = [
    "OMIT_NONE",
    "CallbackSource",
    "CallbackStatus",
    "CheckpointStatus",
    "ClientStatus",
    "DirectoryPendingStatus",
    "HandoffStatus",
    "Health",
    "JournalStatus",
    "ListenerState",
    "ListenerStatus",
    "Liveness",
    "OrphanStatus",
    "PruneStatus",
    "RecentEvent",
    "ShardingStatus",
    "SinkDescription",
    "SinkStatus",
    "Status",
    "TenantStatus",
    "TenantsPage",
    "build_status",
]

OMIT_NONE: Mapping[str, bool] = {"omit_none": True}

ListenerState = Literal[
    "starting", "waiting", "connected", "backoff", "paused", "failed", "stopped"
]


@dataclass
class ListenerStatus:
    """What the status page and readiness know about one tenant (mutable, loop-owned)."""

    tenant: str
    state: ListenerState = "starting"
    ver: int | None = None
    last_event_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    failures: int = 0
    # Set while the journal refuses this tenant's commit (the events are held in memory).
    journal_error: str | None = None
    # Clock time since which Exmail has not answered a listen (None: the last one was).
    unanswered_since: float | None = None
    # A directory change announced and not yet committed (the mail goes on meanwhile).
    directory_pending: PendingDirectory | None = None
    events_by_type: collections.Counter[str] = field(default_factory=collections.Counter)
    recent: collections.deque[tuple[float, str, str, str]] = field(
        default_factory=lambda: collections.deque(maxlen=50)
    )


def _plain(value: Any) -> Any:
    if isinstance(value, _JsonRecord):
        return value.to_json()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


class _JsonRecord:
    """Base of the records below: ``to_json()`` from the dataclass fields."""

    __slots__ = ()
    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]

    @classmethod
    def json_keys(cls) -> frozenset[str]:
        """Every key ``to_json()`` can emit (an ``OMIT_NONE`` field only when set)."""
        return frozenset(f.name for f in fields(cls))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.metadata.get("omit_none"):
                continue
            out[f.name] = _plain(value)
        return out


@dataclass(frozen=True, slots=True)
class Health(_JsonRecord):
    """Readiness in the svcs style: which parts are fine, which fail and why."""

    ok: tuple[str, ...]
    failing: Mapping[str, str]

    @property
    def healthy(self) -> bool:
        return not self.failing


@dataclass(frozen=True, slots=True)
class Liveness(_JsonRecord):
    """Liveness: the supervisor's tasks live (never depends on upstream)."""

    alive: bool
    dead_tasks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SinkDescription:
    """What the composition root says about a sink beyond its figures (no secrets)."""

    target: str | None = None
    types: tuple[str, ...] | None = None
    tenants: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class DirectoryPendingStatus(_JsonRecord):
    """A directory change announced and not yet committed; the mail goes on meanwhile."""

    target: int
    since: float
    attempts: int
    last_error: str | None


@dataclass(frozen=True, slots=True)
class CallbackStatus(_JsonRecord):
    """``tenants[].callbacks`` of an api2 tenant: its callback requests since start
    (relay.runtime.callback_status; docs/operations.md says what each key means)."""

    last_at: float | None
    last_ok_at: float | None
    verified: int
    accepted: int
    duplicate: int
    ignored: int
    refused: Mapping[str, int]
    refused_in_a_row: int
    last_refused: str | None
    last_refused_at: float | None


@dataclass(frozen=True, slots=True)
class TenantStatus(_JsonRecord):
    name: str
    state: str
    ver: int | None
    last_event_at: float | None
    last_error: str | None
    last_error_at: float | None
    failures: int
    events_by_type: Mapping[str, int]
    directory_pending: DirectoryPendingStatus | None = None
    # Which Exmail API: "openapi" (a listen worker) or "api2" (callbacks, with
    # ``callbacks``: relay.runtime.callback_status; its state "callback" or "refusing").
    api: str = "openapi"
    callbacks: CallbackStatus | None = None
    # An api2 tenant's directory polls (relay.runtime.directory2.DirectoryPollStatus).
    directory: _JsonRecord | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True, slots=True)
class SinkStatus(_JsonRecord):
    name: str
    connected: bool
    disabled: str | None
    in_flight: int
    backlog: int
    oldest_pending_age: float | None
    delivered: int
    failed: int
    dead: int
    last_error: str | None
    blocked: Mapping[str, str | float] | None = None  # a resource alarm: reason, since
    target: str | None = field(default=None, metadata=OMIT_NONE)
    types: tuple[str, ...] | None = field(default=None, metadata=OMIT_NONE)
    tenants: tuple[str, ...] | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True, slots=True)
class PruneStatus(_JsonRecord):
    at: float
    events: int


@dataclass(frozen=True, slots=True)
class JournalStatus(_JsonRecord):
    path: str
    events: int | None
    backlog_events: int
    backlog_bytes: int
    max_events: int
    max_bytes: int
    file_bytes: int | None
    backpressure: str | None
    retention_seconds: float
    last_prune: PruneStatus | None


@dataclass(frozen=True, slots=True)
class OrphanStatus(_JsonRecord):
    """A sink the journal holds deliveries for but the configuration no longer has: its
    pending rows were retired to dead letters at start (``retired``, ``retired_at``; 0 and
    ``None`` when an earlier start did it). ``pending`` is above 0 only if someone
    replayed them since; those count toward ``max_events`` until the next start."""

    name: str
    dead: int
    pending: int
    retired: int
    retired_at: float | None


@dataclass(frozen=True, slots=True)
class RecentEvent(_JsonRecord):
    time: float
    tenant: str
    type: str
    id: str
    subject: str | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True, slots=True)
class ClientStatus(_JsonRecord):
    """An API gateway client (``[[clients]]``) and its last use; never its keys."""

    name: str
    tenants: tuple[str, ...]
    scopes: tuple[str, ...]
    last_used_at: float | None
    requests: int


@dataclass(frozen=True, slots=True)
class HandoffStatus(_JsonRecord):
    """The last shard taken (``acquired``) or given up (``released`` with its reason)."""

    shard: int
    kind: str
    reason: str | None
    at: float


@dataclass(frozen=True, slots=True)
class CheckpointStatus(_JsonRecord):
    """Lease mode: the checkpoint store on the broker. ``waiting``: held shards whose
    tenants wait for a complete read, with why (``"<shard>": "<reason>"``); ``refused``:
    messages dropped on read because they were unsigned or not signed by this
    deployment (``malformed``: signed but not a snapshot of their shard)."""

    queues: str
    connected: bool
    last_error: str | None
    published: int
    refused: int
    malformed: int
    last_refused: str | None
    waiting: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class ShardingStatus(_JsonRecord):
    """Which shards this replica runs. ``static``: the one fixed shard ``index`` of
    ``count`` (``live`` empty: nothing is heard from the others); ``lease``: the leases
    held now, the replicas seen alive, and whether this one is a standby (owns none)."""

    mode: str
    replica: str
    shards: int
    owned: tuple[int, ...]
    live: tuple[str, ...]
    standby: bool
    last_handoff: HandoffStatus | None = None
    last_error: str | None = None
    # Lease mode: outsiders heard lately on presence; presence dropped unread, by reason.
    conflicts: tuple[str, ...] = ()
    refused: dict[str, int] = field(default_factory=dict)
    unhealthy: str | None = None
    """Lease mode: why this replica holds no shard and takes none (``None``: healthy)."""
    # Lease mode: the links a resource alarm blocks now (leases, checkpoints): reason, since.
    blocked: Mapping[str, Mapping[str, str | float]] = field(default_factory=dict)
    checkpoints: CheckpointStatus | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True, slots=True)
class TenantsPage(_JsonRecord):
    """Which page of the tenants ``tenants`` holds, when one was asked for (the status
    page, or ``/status.json?q=&page=&per_page=``): ``matched`` of ``total`` tenants match
    ``q``; ``states`` counts every tenant by state (not only this page)."""

    q: str
    page: int
    per_page: int
    pages: int
    matched: int
    total: int
    states: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class Status(_JsonRecord):
    """The whole ``/status.json`` document."""

    now: float
    started_at: float
    stopping: bool
    show_content: bool
    tenants: tuple[TenantStatus, ...]
    sinks: tuple[SinkStatus, ...]
    journal: JournalStatus
    recent_events: tuple[RecentEvent, ...]
    orphans: tuple[OrphanStatus, ...] = ()
    clients: tuple[ClientStatus, ...] = ()
    sharding: ShardingStatus | None = field(default=None, metadata=OMIT_NONE)
    tenants_page: TenantsPage | None = field(default=None, metadata=OMIT_NONE)
    config_warnings: tuple[str, ...] | None = field(default=None, metadata=OMIT_NONE)


def _tenant(st: ListenerStatus) -> TenantStatus:
    return TenantStatus(
        name=st.tenant,
        state=st.state,
        ver=st.ver,
        last_event_at=st.last_event_at,
        last_error=st.last_error,
        last_error_at=st.last_error_at,
        failures=st.failures,
        events_by_type=dict(st.events_by_type),
        directory_pending=None
        if (pending := st.directory_pending) is None
        else DirectoryPendingStatus(
            target=pending.target,
            since=pending.since,
            attempts=pending.attempts,
            last_error=pending.last_error,
        ),
    )


def _sink(
    drainer: Drainer, stats: JournalStats | None, about: SinkDescription, now: float
) -> SinkStatus:
    sink_stats = stats.sinks.get(drainer.name) if stats else None
    oldest = sink_stats.oldest_pending_created if sink_stats else None
    return SinkStatus(
        name=drainer.name,
        connected=drainer.sink.connected,
        disabled=drainer.disabled_reason,
        in_flight=drainer.in_flight,
        backlog=sink_stats.pending if sink_stats else 0,
        oldest_pending_age=None if oldest is None else round(now - oldest, 3),
        delivered=drainer.delivered,
        failed=drainer.failed,
        dead=sink_stats.dead if sink_stats else 0,
        last_error=drainer.last_error,
        blocked=getattr(drainer.sink, "block_status", None),
        target=about.target,
        types=about.types,
        tenants=about.tenants,
    )


def _journal(
    journal: Journal, stats: JournalStats | None, last_prune: tuple[float, int] | None
) -> JournalStatus:
    return JournalStatus(
        path=str(journal.path),
        events=stats.events if stats else None,
        backlog_events=journal.backlog_events,
        backlog_bytes=journal.backlog_bytes,
        max_events=journal.max_events,
        max_bytes=journal.max_bytes,
        file_bytes=stats.file_bytes if stats else None,
        backpressure=journal.backpressure_reason(),
        retention_seconds=journal.retention,
        last_prune=None if last_prune is None else PruneStatus(*last_prune),
    )


def _orphans(
    drainers: Sequence[Drainer],
    stats: JournalStats | None,
    retired: Mapping[str, int],
    retired_at: float | None,
) -> tuple[OrphanStatus, ...]:
    """Sinks with dead letters or pending rows in the journal but no drainer here."""
    running = {d.name for d in drainers}
    return tuple(
        OrphanStatus(
            name=name,
            dead=sink.dead,
            pending=sink.pending,
            retired=retired.get(name, 0),
            retired_at=retired_at if name in retired else None,
        )
        for name, sink in sorted(stats.sinks.items() if stats else ())
        if name not in running and (sink.dead or sink.pending)
    )


class CallbackSource(Protocol):
    """An api2 tenant's tally (:class:`relay.runtime.callback_status.CallbackTally`)."""

    tenant: str
    recent: collections.deque[tuple[float, str, str, str]]

    def to_tenant(self) -> TenantStatus: ...


def _recent(
    listeners: Sequence[ListenerStatus | CallbackSource], *, show_content: bool, limit: int
) -> tuple[RecentEvent, ...]:
    """The newest ``limit`` events over all tenants, newest first (ties: the greater
    tenant name, type, id first). Visits tenants newest first and stops at the first
    whose newest event cannot make the list, so 10 000 tenants of 50 recent events each
    cost a few of them, not a sort of all 500 000."""
    if limit <= 0:
        return ()
    tops = sorted(
        ((newest[0], st.tenant, *newest[1:]), st)
        for st in listeners
        if st.recent
        for newest in (max(st.recent),)
    )
    best: list[tuple[float, str, str, str, str | None]] = []
    for top, st in reversed(tops):
        if len(best) >= limit and top <= best[0]:
            break  # neither this tenant's events nor any later one's are newer
        for stamp, etype, eid, subj in st.recent:
            entry = (stamp, st.tenant, etype, eid, subj)
            if len(best) < limit:
                heapq.heappush(best, entry)
            elif entry > best[0]:
                heapq.heapreplace(best, entry)
    return tuple(
        RecentEvent(stamp, tenant, etype, eid, subj if show_content else None)
        for stamp, tenant, etype, eid, subj in sorted(best, reverse=True)
    )


def build_status(
    *,
    now: float,
    started_at: float,
    stopping: bool,
    listeners: Sequence[ListenerStatus],
    drainers: Sequence[Drainer],
    journal: Journal,
    stats: JournalStats | None,
    last_prune: tuple[float, int] | None,
    descriptions: Mapping[str, SinkDescription],
    show_content: bool,
    recent: int,
    retired: Mapping[str, int] | None = None,
    retired_at: float | None = None,
    sharding: ShardingStatus | None = None,
    callbacks: Sequence[CallbackSource] = (),
) -> Status:
    """The status document from the components' current state (no I/O). ``retired``:
    the orphaned sinks' deliveries retired to dead letters at start, at ``retired_at``;
    ``callbacks``: the api2 tenants, listed after the listeners' tenants."""
    nothing = SinkDescription()
    return Status(
        now=now,
        started_at=started_at,
        stopping=stopping,
        show_content=show_content,
        tenants=(*(_tenant(st) for st in listeners), *(c.to_tenant() for c in callbacks)),
        sinks=tuple(_sink(d, stats, descriptions.get(d.name, nothing), now) for d in drainers),
        journal=_journal(journal, stats, last_prune),
        recent_events=_recent([*listeners, *callbacks], show_content=show_content, limit=recent),
        orphans=_orphans(drainers, stats, retired or {}, retired_at),
        sharding=sharding,
    )
