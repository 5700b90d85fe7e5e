"""Prometheus metrics: every family the relay exports, defined once, here.

Names start ``exmail_relay_``. Labels are low-cardinality: ``tenant`` is the only label
with many values (one per configured tenant); accounts, mail ids and URLs never become
labels. Sinks are labelled by name (``amqp``, ``console``, ``webhook:<name>``).
``docs/operations.md`` lists each family with its meaning and the suggested alerts.

The families belong to a :class:`Metrics` object bound to one registry, not to the
module: the service exports :func:`default_metrics` (the process-wide registry that
``/metrics`` serves), and a test can build its own ``Metrics(CollectorRegistry())``
and read exactly what one relay reported. :class:`PrometheusObserver` is the
:class:`relay.runtime.observer.Observer` that writes them.
"""

from __future__ import annotations

import functools
import platform
from collections.abc import Mapping, Sequence

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, Info

from relay import __version__
from relay.core.events import Event
from relay.journal import JournalStats
from relay.runtime.observer import LISTENER_STATES, Observer, SinkObserver, TenantObserver
from relay.sinks.webhook import OUTCOME_CLASSES

__all__ = ["Metrics", "PrometheusObserver", "default_metrics"]


class Metrics:
    """Every metric family of the relay, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        r = registry
        self.build_info = Info(
            "exmail_relay_build", "Version of the relay and of Python.", registry=r
        )
        self.build_info.info({"version": __version__, "python": platform.python_version()})

        # -- source ---------------------------------------------------------------------
        self.listen_requests = Counter(
            "exmail_relay_listen_requests",
            "listen long-poll requests by outcome (data, keepalive, timeout, token, transient, "
            "config, malformed, too_large).",
            ["tenant", "outcome"],
            registry=r,
        )
        self.listener_state = Gauge(
            "exmail_relay_listener_state",
            "1 for the state each tenant's listener is in, 0 for the others.",
            ["tenant", "state"],
            registry=r,
        )
        self.events_ingested = Counter(
            "exmail_relay_events_ingested",
            "Events committed to the journal, by type (duplicates of a stored id not counted).",
            ["tenant", "type"],
            registry=r,
        )
        self.messages_skipped = Counter(
            "exmail_relay_messages_skipped",
            "Upstream data logged and skipped, by kind (unknown, malformed, error; enrich: a "
            "user/get refusal that left a user event without its profile).",
            ["tenant", "kind"],
            registry=r,
        )
        self.directory_expansions = Counter(
            "exmail_relay_directory_expansions",
            "Directory changes expanded (user/list, user/get) apart from the mail, by "
            "outcome: ok, or the fault that sends it to its retry (transient, timeout, "
            "token, config, too_large).",
            ["tenant", "outcome"],
            registry=r,
        )
        self.fields_truncated = Counter(
            "exmail_relay_fields_truncated",
            "Mail fields over [[tenants]] max_field_bytes, cut and delivered with "
            "data.truncated naming them, by field (subject, summary, ...).",
            ["tenant", "field"],
            registry=r,
        )
        self.upstream_duration = Histogram(
            "exmail_relay_upstream_request_seconds",
            "Duration of Exmail API requests, by operation and outcome (listen excluded: it "
            "holds).",
            ["operation", "outcome"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.token_fetches = Counter(
            "exmail_relay_token_fetches",
            "Access tokens fetched, by reason (initial, expiry, invalid_token, forced).",
            ["tenant", "reason"],
            registry=r,
        )
        self.checkpoint_ver = Gauge(
            "exmail_relay_checkpoint_ver",
            "The directory version (Ver) checkpointed for each tenant.",
            ["tenant"],
            registry=r,
        )

        # -- journal --------------------------------------------------------------------
        self.journal_events = Gauge(
            "exmail_relay_journal_events", "Events stored in the journal.", registry=r
        )
        self.journal_backlog_events = Gauge(
            "exmail_relay_journal_backlog_events",
            "Events not yet final for every sink.",
            registry=r,
        )
        self.journal_backlog_bytes = Gauge(
            "exmail_relay_journal_backlog_bytes",
            "Bytes of events not yet final for every sink.",
            registry=r,
        )
        self.journal_file_bytes = Gauge(
            "exmail_relay_journal_file_bytes", "Size of the journal database.", registry=r
        )
        self.journal_commits = Gauge(
            "exmail_relay_journal_commits", "Group commits since start.", registry=r
        )
        self.backpressure = Gauge(
            "exmail_relay_backpressure",
            "1 while the journal is at its bound and listeners pause.",
            registry=r,
        )

        # -- sinks ----------------------------------------------------------------------
        self.sink_backlog = Gauge(
            "exmail_relay_sink_backlog", "Pending deliveries per sink.", ["sink"], registry=r
        )
        self.sink_oldest_pending = Gauge(
            "exmail_relay_sink_oldest_pending_seconds",
            "Age of the oldest pending delivery per sink (0 when none).",
            ["sink"],
            registry=r,
        )
        self.sink_connected = Gauge(
            "exmail_relay_sink_connected",
            "1 when the sink can deliver (connected, enabled).",
            ["sink"],
            registry=r,
        )
        self.deliveries = Counter(
            "exmail_relay_deliveries", "Events delivered, per sink.", ["sink"], registry=r
        )
        self.delivery_failures = Counter(
            "exmail_relay_delivery_failures",
            "Failed delivery attempts per sink, by reason"
            " (retry, unavailable, dead, disabled, journal).",
            ["sink", "reason"],
            registry=r,
        )
        self.dead_letters = Counter(
            "exmail_relay_dead_letters",
            "Deliveries that became dead letters, per sink.",
            ["sink"],
            registry=r,
        )
        self.delivery_latency = Histogram(
            "exmail_relay_delivery_latency_seconds",
            "From journal commit to confirmed delivery, per sink.",
            ["sink"],
            buckets=(
                0.001,
                0.0025,
                0.005,
                0.01,
                0.025,
                0.05,
                0.1,
                0.25,
                0.5,
                1,
                2.5,
                5,
                10,
                60,
                300,
            ),
            registry=r,
        )
        self.sink_disabled = Gauge(
            "exmail_relay_sink_disabled",
            "1 while a sink is disabled (a webhook endpoint that answered 410), else 0.",
            ["sink"],
            registry=r,
        )

        # -- webhooks (labelled by sink name ``webhook:<name>``, never by URL) ------------
        self.webhook_attempts = Counter(
            "exmail_relay_webhook_attempts",
            "Webhook delivery attempts per endpoint, by outcome class "
            "(2xx, 3xx, 4xx, 5xx, timeout, connection).",
            ["sink", "outcome"],
            registry=r,
        )
        self.webhook_attempt_seconds = Histogram(
            "exmail_relay_webhook_attempt_seconds",
            "Duration of one webhook attempt (request sent to response read), per endpoint.",
            ["sink"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )

        # -- API gateway (route = the route's template, never the raw path) -------------
        self.api_requests = Counter(
            "exmail_relay_api_requests",
            "API gateway calls by client, route template and HTTP status code.",
            ["client", "route", "code"],
            registry=r,
        )
        self.api_request_seconds = Histogram(
            "exmail_relay_api_request_seconds",
            "Duration of API gateway calls (request read to answer written), by route template.",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        # -- the second API's callback (relay.gateway.callback) --------------------------
        self.callbacks = Counter(
            "exmail_relay_callbacks",
            "Requests to the second API's callback URL, by tenant and outcome (verified,"
            " accepted, duplicate, ignored, or the reason of a refusal).",
            ["tenant", "outcome"],
            registry=r,
        )
        self.callback_seconds = Histogram(
            "exmail_relay_callback_seconds",
            "Time from a callback request's arrival to its answer (the journal commit included).",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        # -- the second API's directory polls (relay.runtime.directory2) ----------------
        self.directory_polls = Counter(
            "exmail_relay_directory_polls",
            "Directory listings of api2 tenants, by outcome (changed, unchanged, baseline,"
            " held, or the failure: transient, timeout, token, config, too_large, malformed,"
            " implausible, journal, fenced, waiting).",
            ["tenant", "outcome"],
            registry=r,
        )
        self.directory_held_deletions = Gauge(
            "exmail_relay_directory_held_deletions",
            "Members the held directory listing of an api2 tenant would delete (0: none"
            " held); held for deleting too many at once, committed once confirmed.",
            ["tenant"],
            registry=r,
        )
        self.directory_poll_seconds = Histogram(
            "exmail_relay_directory_poll_seconds",
            "Time of one directory poll of an api2 tenant (both listings, diff and commit).",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=r,
        )
        # -- shard leases (lease mode) -------------------------------------------------
        self.shard_acquisitions = Counter(
            "exmail_relay_shard_acquisitions", "Shard leases this replica took.", registry=r
        )
        self.shard_releases = Counter(
            "exmail_relay_shard_releases",
            "Shard leases this replica gave up, by reason "
            "(balance, shutdown, connection_lost, unhealthy).",
            ["reason"],
            registry=r,
        )
        for reason in ("balance", "shutdown", "connection_lost", "unhealthy"):
            self.shard_releases.labels(reason)
        self.lease_unhealthy = Gauge(
            "exmail_relay_lease_unhealthy",
            "1 while this replica holds no shard because it is unhealthy (lease mode).",
            registry=r,
        )
        self.health_failing = Gauge(
            "exmail_relay_health_failing_seconds",
            "How long a condition a shard owner needs has failed (journal, delivery link).",
            ["condition"],
            registry=r,
        )
        for condition in ("journal", "delivery link"):
            self.health_failing.labels(condition)
        self.owned_shards = Gauge(
            "exmail_relay_owned_shards", "Shards whose tenants this replica runs now.", registry=r
        )
        self.fence_resumes = Counter(
            "exmail_relay_fence_resumes",
            "Tenants let go by the token fence while their shard stayed held, started again.",
            registry=r,
        )
        self.takeover_gap = Histogram(
            "exmail_relay_takeover_gap_seconds",
            "From taking a shard's lease to the first listen sent for its tenants.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
            registry=r,
        )
        self.takeover_queue = Gauge(
            "exmail_relay_takeover_queue",
            "Token fetches and bootstraps waiting for their turn ([sharding] takeover_rate).",
            registry=r,
        )
        self.takeover_wait = Histogram(
            "exmail_relay_takeover_wait_seconds",
            "How long a token fetch or bootstrap waited for its turn ([sharding] takeover_rate).",
            buckets=(0.01, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
            registry=r,
        )
        self.checkpoint_store_up = Gauge(
            "exmail_relay_checkpoint_store_up",
            "Lease mode: 1 while the checkpoint store's broker link is up.",
            registry=r,
        )
        self.broker_blocked = Gauge(
            "exmail_relay_broker_blocked",
            "1 while a RabbitMQ resource alarm (disk or memory low) blocks publishing on the"
            " link (amqp: the sink; leases, checkpoints: lease mode).",
            ["link"],
            registry=r,
        )
        self.checkpoint_waiting_shards = Gauge(
            "exmail_relay_checkpoint_waiting_shards",
            "Lease mode: held shards whose tenants wait for a complete checkpoint read.",
            registry=r,
        )
        self.broker_messages_refused = Counter(
            "exmail_relay_broker_messages_refused",
            "Broker messages dropped unread (lease mode), by kind (presence, checkpoint) and "
            "reason (unsigned, malformed, bad_signature, stale, invalid_body, "
            "invalid_replica_id).",
            ["kind", "reason"],
            registry=r,
        )
        for kind in ("presence", "checkpoint"):
            for reason in ("unsigned", "bad_signature"):
                self.broker_messages_refused.labels(kind, reason)


@functools.cache
def default_metrics() -> Metrics:
    """The families on prometheus-client's process-wide registry (created once)."""
    return Metrics(REGISTRY)


class _Tenant(TenantObserver):
    def __init__(self, metrics: Metrics, tenant: str) -> None:
        self._m = metrics
        self._tenant = tenant
        self._states = {s: metrics.listener_state.labels(tenant, s) for s in LISTENER_STATES}
        self._checkpoint = metrics.checkpoint_ver.labels(tenant)

    def state(self, state: str) -> None:
        for name, gauge in self._states.items():
            gauge.set(1 if name == state else 0)

    def listen(self, outcome: str) -> None:
        self._m.listen_requests.labels(self._tenant, outcome).inc()

    def committed(self, events: Sequence[Event]) -> None:
        # One increment per event type, not per event (a listen answer is one type or two).
        counts: dict[str, int] = {}
        for event in events:
            counts[event.type] = counts.get(event.type, 0) + 1
        ingested = self._m.events_ingested
        for event_type, count in counts.items():
            ingested.labels(self._tenant, event_type).inc(count)

    def checkpoint(self, ver: int) -> None:
        self._checkpoint.set(ver)

    def skipped(self, kind: str) -> None:
        self._m.messages_skipped.labels(self._tenant, kind).inc()

    def truncated(self, field: str) -> None:
        self._m.fields_truncated.labels(self._tenant, field).inc()

    def directory(self, outcome: str) -> None:
        self._m.directory_expansions.labels(self._tenant, outcome).inc()

    def token_fetched(self, reason: str) -> None:
        self._m.token_fetches.labels(self._tenant, reason).inc()


class _Sink(SinkObserver):
    def __init__(self, metrics: Metrics, sink: str) -> None:
        self._m = metrics
        self._sink = sink
        self._connected = metrics.sink_connected.labels(sink)
        self._delivered = metrics.deliveries.labels(sink)
        self._latency = metrics.delivery_latency.labels(sink)
        self._attempt_seconds = metrics.webhook_attempt_seconds.labels(sink)

    def connected(self, connected: bool) -> None:
        self._connected.set(1 if connected else 0)

    def disabled(self, disabled: bool) -> None:
        self._m.sink_disabled.labels(self._sink).set(1 if disabled else 0)

    def delivered(self, latency: float) -> None:
        self._delivered.inc()
        self._latency.observe(latency)

    def failed(self, reason: str) -> None:
        self._m.delivery_failures.labels(self._sink, reason).inc()
        if reason == "dead":
            self._m.dead_letters.labels(self._sink).inc()

    def attempt(self, outcome: str, seconds: float) -> None:
        self._m.webhook_attempts.labels(self._sink, outcome).inc()
        self._attempt_seconds.observe(seconds)

    def backlog(self, pending: int, oldest_age: float) -> None:
        self._m.sink_backlog.labels(self._sink).set(pending)
        self._m.sink_oldest_pending.labels(self._sink).set(oldest_age)

    def export_webhook_zeros(self) -> None:
        """Export every attempt outcome at 0 from the start (rate() needs a first sample)."""
        for outcome in OUTCOME_CLASSES:
            self._m.webhook_attempts.labels(self._sink, outcome)


class PrometheusObserver(Observer):
    """Writes what the runtime reports into :class:`Metrics`."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self.metrics = metrics if metrics is not None else default_metrics()

    def tenant(self, tenant: str) -> TenantObserver:
        return _Tenant(self.metrics, tenant)

    def sink(self, sink: str) -> _Sink:
        return _Sink(self.metrics, sink)

    def upstream(self, operation: str, seconds: float, outcome: str) -> None:
        self.metrics.upstream_duration.labels(operation, outcome).observe(seconds)

    def api_request(self, client: str, route: str, code: int, seconds: float) -> None:
        self.metrics.api_requests.labels(client, route, str(code)).inc()
        self.metrics.api_request_seconds.labels(route).observe(seconds)

    def journal(self, stats: JournalStats, *, commits: int, backpressure: bool) -> None:
        m = self.metrics
        m.journal_events.set(stats.events)
        m.journal_backlog_events.set(stats.backlog_events)
        m.journal_backlog_bytes.set(stats.backlog_bytes)
        m.journal_file_bytes.set(stats.file_bytes)
        m.journal_commits.set(commits)
        m.backpressure.set(1 if backpressure else 0)

    def shard_acquired(self) -> None:
        self.metrics.shard_acquisitions.inc()

    def shard_released(self, reason: str) -> None:
        self.metrics.shard_releases.labels(reason).inc()

    def owned_shards(self, count: int) -> None:
        self.metrics.owned_shards.set(count)

    def broker_message_refused(self, kind: str, reason: str) -> None:
        self.metrics.broker_messages_refused.labels(kind, reason.replace(" ", "_")).inc()

    def lease_health(self, failing: Mapping[str, float], unfit: bool) -> None:
        self.metrics.lease_unhealthy.set(1 if unfit else 0)
        for condition in ("journal", "delivery link"):
            self.metrics.health_failing.labels(condition).set(failing.get(condition, 0.0))

    def callback(self, tenant: str, outcome: str, seconds: float) -> None:
        self.metrics.callbacks.labels(tenant, outcome).inc()
        self.metrics.callback_seconds.observe(seconds)

    def directory_poll(self, tenant: str, outcome: str, seconds: float) -> None:
        self.metrics.directory_polls.labels(tenant, outcome).inc()
        self.metrics.directory_poll_seconds.observe(seconds)

    def directory_held(self, tenant: str, deletions: int) -> None:
        self.metrics.directory_held_deletions.labels(tenant).set(deletions)

    def takeover_gap(self, seconds: float) -> None:
        self.metrics.takeover_gap.observe(seconds)

    def fence_resumed(self) -> None:
        self.metrics.fence_resumes.inc()

    def takeover_queue(self, waiting: int) -> None:
        self.metrics.takeover_queue.set(waiting)

    def takeover_turn(self, waited: float) -> None:
        self.metrics.takeover_wait.observe(waited)

    def checkpoint_store(self, connected: bool) -> None:
        self.metrics.checkpoint_store_up.set(1 if connected else 0)

    def checkpoint_waiting(self, shards: int) -> None:
        self.metrics.checkpoint_waiting_shards.set(shards)

    def broker_blocked(self, link: str, blocked: bool) -> None:
        self.metrics.broker_blocked.labels(link).set(1 if blocked else 0)
