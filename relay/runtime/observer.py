"""The observer seam: what the runtime tells the outside world about itself.

Where it sits: the listeners, the drainers and the supervisor report what happens
(states, outcomes, counts) to an :class:`Observer`; they never import a metrics
library. The composition root (:mod:`relay.app.wiring`) hands them the Prometheus
implementation (:class:`relay.ops.metrics.PrometheusObserver`); tests hand them the
default, which records nothing, or their own.

Per-tenant and per-sink handles (:meth:`Observer.tenant`, :meth:`Observer.sink`) are
asked for once, when a worker is built, so a per-event report costs one method call and
no label lookup.

The observer is write-only. Figures that the status page and readiness show come from
the components themselves (the drainer's counters, the journal's stats), never read
back out of a metrics registry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from relay.core.events import Event
    from relay.journal import JournalStats

__all__ = [
    "LISTENER_STATES",
    "ForwardingObserver",
    "ForwardingTenantObserver",
    "Observer",
    "SinkObserver",
    "TenantObserver",
    "upstream_observer",
]

# Every state a listener can be in, in the order the metrics export them.
LISTENER_STATES = (
    "starting",
    "waiting",
    "connected",
    "backoff",
    "paused",
    "failed",
    "stopped",
)


class TenantObserver:
    """What one tenant's listener reports. The base class records nothing."""

    def state(self, state: str) -> None:
        """The listener entered ``state`` (one of :data:`LISTENER_STATES`)."""

    def listen(self, outcome: str) -> None:
        """One ``listen`` ended: data, keepalive, timeout, token, transient, config."""

    def committed(self, events: Sequence[Event]) -> None:
        """``events`` were committed to the journal."""

    def checkpoint(self, ver: int) -> None:
        """The tenant's Ver is now ``ver``."""

    def skipped(self, kind: str) -> None:
        """An upstream message was logged and skipped (unknown, malformed, error, enrich)."""

    def truncated(self, field: str) -> None:
        """A mail's ``field`` was over ``max_field_bytes`` and was cut (the event says so)."""

    def directory(self, outcome: str) -> None:
        """One directory expansion ended: ok, or a fault kind (transient, timeout, ...)."""

    def token_fetched(self, reason: str) -> None:
        """An access token was fetched (initial, expiry, invalid_token, forced)."""


class SinkObserver:
    """What one sink's drainer (and the sink itself) reports. Records nothing here."""

    def connected(self, connected: bool) -> None:
        """Whether the sink can deliver now."""

    def disabled(self, disabled: bool) -> None:
        """Whether the sink (a webhook endpoint) is disabled."""

    def delivered(self, latency: float) -> None:
        """A delivery was confirmed, ``latency`` seconds after its event was committed."""

    def failed(self, reason: str) -> None:
        """An attempt failed: retry, unavailable, dead (a dead letter), disabled, or
        journal (the journal could not record its outcome)."""

    def attempt(self, outcome: str, seconds: float) -> None:
        """One webhook attempt ended with ``outcome`` (2xx..5xx, timeout, connection)."""

    def backlog(self, pending: int, oldest_age: float) -> None:
        """The sink's pending deliveries and the age of the oldest (0 when none)."""


class Observer:
    """The seam itself. The base class records nothing (tests, tools)."""

    def tenant(self, tenant: str) -> TenantObserver:
        return TenantObserver()

    def sink(self, sink: str) -> SinkObserver:
        return SinkObserver()

    def upstream(self, operation: str, seconds: float, outcome: str) -> None:
        """One Exmail API call (not ``listen``) took ``seconds`` and ended in ``outcome``."""

    def journal(self, stats: JournalStats, *, commits: int, backpressure: bool) -> None:
        """The journal's counts, refreshed by the supervisor's housekeeping."""

    def api_request(self, client: str, route: str, code: int, seconds: float) -> None:
        """One API gateway call by ``client`` to ``route`` (the route's template, never the
        raw path) answered ``code`` after ``seconds``."""

    def shard_acquired(self) -> None:
        """Lease mode: this replica took a shard's lease."""

    def shard_released(self, reason: str) -> None:
        """Lease mode: this replica gave a shard up (balance, shutdown, connection_lost,
        unhealthy)."""

    def lease_health(self, failing: Mapping[str, float], unfit: bool) -> None:
        """Lease mode, about once a second: how long each health condition (``journal``,
        ``delivery link``) has failed, and whether the replica holds off its shards."""

    def owned_shards(self, count: int) -> None:
        """Lease mode: how many shards this replica runs now."""

    def takeover_gap(self, seconds: float) -> None:
        """Lease mode: from a shard's acquisition to its first tenant's first listen."""

    def fence_resumed(self) -> None:
        """Lease mode: a tenant let go by the fence while its shard stayed held (a
        freshness lapse) was started again."""

    def takeover_queue(self, waiting: int) -> None:
        """How many token fetches and bootstraps wait for their turn (``[sharding]
        takeover_rate``) now."""

    def takeover_turn(self, waited: float) -> None:
        """A token fetch or bootstrap got its turn after waiting ``waited`` seconds."""

    def checkpoint_store(self, connected: bool) -> None:
        """Lease mode: whether the checkpoint store's broker link is up."""

    def checkpoint_waiting(self, shards: int) -> None:
        """Lease mode: how many held shards wait for a complete checkpoint read."""

    def broker_blocked(self, link: str, blocked: bool) -> None:
        """Whether a resource alarm of RabbitMQ blocks the broker link ``link`` now
        (``amqp``: the sink; ``leases``, ``checkpoints``: lease mode's)."""

    def broker_message_refused(self, kind: str, reason: str) -> None:
        """Lease mode: a broker message of ``kind`` (``presence``, ``checkpoint``) was
        dropped, unread, for ``reason`` (``unsigned``, ``bad signature``, ``stale``, ...)."""

    def directory_poll(self, tenant: str, outcome: str, seconds: float) -> None:
        """One listing of an api2 tenant's directory took ``seconds``: ``changed``,
        ``unchanged``, ``baseline``, ``held``, or why it failed (relay.runtime.directory2)."""

    def directory_held(self, tenant: str, deletions: int) -> None:
        """The listing of an api2 tenant held for too many deletions would delete
        ``deletions`` members (0: none is held now; relay.core.listing_guard)."""

    def callback(self, tenant: str, outcome: str, seconds: float) -> None:
        """One request to the second API's callback URL of ``tenant`` was answered after
        ``seconds``: ``verified`` (GET handshake), ``accepted`` (committed), ``duplicate``
        (already journaled), ``ignored`` (an unknown MsgType), or the refusal's reason."""


class ForwardingTenantObserver(TenantObserver):
    """Passes every report on to ``inner``; subclasses override what they add to."""

    def __init__(self, inner: TenantObserver) -> None:
        self.inner = inner

    def state(self, state: str) -> None:
        self.inner.state(state)

    def listen(self, outcome: str) -> None:
        self.inner.listen(outcome)

    def committed(self, events: Sequence[Event]) -> None:
        self.inner.committed(events)

    def checkpoint(self, ver: int) -> None:
        self.inner.checkpoint(ver)

    def skipped(self, kind: str) -> None:
        self.inner.skipped(kind)

    def truncated(self, field: str) -> None:
        self.inner.truncated(field)

    def directory(self, outcome: str) -> None:
        self.inner.directory(outcome)

    def token_fetched(self, reason: str) -> None:
        self.inner.token_fetched(reason)


class ForwardingObserver(Observer):
    """Passes every report on to ``inner``: the base of observers that add to another
    (the unread cache), so a method added to the seam is never
    dropped by a wrapper that forgot it (tests/runtime/test_runtime_observer.py)."""

    def __init__(self, inner: Observer) -> None:
        self.inner = inner

    def tenant(self, tenant: str) -> TenantObserver:
        return self.inner.tenant(tenant)

    def sink(self, sink: str) -> SinkObserver:
        return self.inner.sink(sink)

    def upstream(self, operation: str, seconds: float, outcome: str) -> None:
        self.inner.upstream(operation, seconds, outcome)

    def journal(self, stats: JournalStats, *, commits: int, backpressure: bool) -> None:
        self.inner.journal(stats, commits=commits, backpressure=backpressure)

    def api_request(self, client: str, route: str, code: int, seconds: float) -> None:
        self.inner.api_request(client, route, code, seconds)

    def shard_acquired(self) -> None:
        self.inner.shard_acquired()

    def shard_released(self, reason: str) -> None:
        self.inner.shard_released(reason)

    def lease_health(self, failing: Mapping[str, float], unfit: bool) -> None:
        self.inner.lease_health(failing, unfit)

    def owned_shards(self, count: int) -> None:
        self.inner.owned_shards(count)

    def takeover_gap(self, seconds: float) -> None:
        self.inner.takeover_gap(seconds)

    def fence_resumed(self) -> None:
        self.inner.fence_resumed()

    def takeover_queue(self, waiting: int) -> None:
        self.inner.takeover_queue(waiting)

    def takeover_turn(self, waited: float) -> None:
        self.inner.takeover_turn(waited)

    def checkpoint_store(self, connected: bool) -> None:
        self.inner.checkpoint_store(connected)

    def checkpoint_waiting(self, shards: int) -> None:
        self.inner.checkpoint_waiting(shards)

    def broker_blocked(self, link: str, blocked: bool) -> None:
        self.inner.broker_blocked(link, blocked)

    def broker_message_refused(self, kind: str, reason: str) -> None:
        self.inner.broker_message_refused(kind, reason)

    def directory_poll(self, tenant: str, outcome: str, seconds: float) -> None:
        self.inner.directory_poll(tenant, outcome, seconds)

    def directory_held(self, tenant: str, deletions: int) -> None:
        self.inner.directory_held(tenant, deletions)

    def callback(self, tenant: str, outcome: str, seconds: float) -> None:
        self.inner.callback(tenant, outcome, seconds)


def upstream_observer(observer: Observer) -> Callable[[str, float, str], None]:
    """The Exmail client's ``on_request``: every operation but ``listen`` (which holds)."""

    def observe(operation: str, seconds: float, outcome: str) -> None:
        if operation != "listen":
            observer.upstream(operation, seconds, outcome)

    return observe
