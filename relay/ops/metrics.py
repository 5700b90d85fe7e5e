"""Prometheus metrics: every family the relay exports, defined once, here.

Names start ``exmail_relay_``. Labels are low-cardinality: ``tenant`` is the only label
with many values (one per configured tenant); accounts, mail ids and URLs never become
labels. Sinks are labelled by name (``amqp``, ``console``, ``webhook:<name>``).
``docs/operations.md`` lists each family with its meaning and the suggested alerts.
"""

from __future__ import annotations

import platform

from prometheus_client import Counter, Gauge, Histogram, Info

from relay import __version__

__all__ = [
    "BACKPRESSURE",
    "BUILD_INFO",
    "CHECKPOINT_VER",
    "DEAD_LETTERS",
    "DELIVERIES",
    "DELIVERY_FAILURES",
    "DELIVERY_LATENCY",
    "EVENTS_INGESTED",
    "JOURNAL_BACKLOG_BYTES",
    "JOURNAL_BACKLOG_EVENTS",
    "JOURNAL_COMMITS",
    "JOURNAL_EVENTS",
    "JOURNAL_FILE_BYTES",
    "LISTENER_STATE",
    "LISTENER_STATES",
    "LISTEN_REQUESTS",
    "MESSAGES_SKIPPED",
    "SINK_BACKLOG",
    "SINK_CONNECTED",
    "SINK_DISABLED",
    "SINK_OLDEST_PENDING",
    "TOKEN_FETCHES",
    "UPSTREAM_DURATION",
    "WEBHOOK_ATTEMPTS",
    "WEBHOOK_ATTEMPT_SECONDS",
    "WEBHOOK_OUTCOMES",
]

BUILD_INFO = Info("exmail_relay_build", "Version of the relay and of Python.")
BUILD_INFO.info({"version": __version__, "python": platform.python_version()})

# -- source ---------------------------------------------------------------------------

LISTEN_REQUESTS = Counter(
    "exmail_relay_listen_requests",
    "listen long-poll requests by outcome (data, keepalive, timeout, token, transient, "
    "config, malformed).",
    ["tenant", "outcome"],
)
LISTENER_STATES = ("starting", "connected", "backoff", "paused", "failed", "stopped")
LISTENER_STATE = Gauge(
    "exmail_relay_listener_state",
    "1 for the state each tenant's listener is in, 0 for the others.",
    ["tenant", "state"],
)
EVENTS_INGESTED = Counter(
    "exmail_relay_events_ingested",
    "Events committed to the journal, by type (duplicates of a stored id not counted).",
    ["tenant", "type"],
)
MESSAGES_SKIPPED = Counter(
    "exmail_relay_messages_skipped",
    "Upstream data logged and skipped, by kind (unknown, malformed, error; enrich: a "
    "user/get refusal that left a user event without its profile).",
    ["tenant", "kind"],
)
UPSTREAM_DURATION = Histogram(
    "exmail_relay_upstream_request_seconds",
    "Duration of Exmail API requests, by endpoint and outcome (listen excluded: it holds).",
    ["endpoint", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
TOKEN_FETCHES = Counter(
    "exmail_relay_token_fetches",
    "Access tokens fetched, by reason (initial, expiry, invalid_token, forced).",
    ["tenant", "reason"],
)
CHECKPOINT_VER = Gauge(
    "exmail_relay_checkpoint_ver",
    "The directory version (Ver) checkpointed for each tenant.",
    ["tenant"],
)

# -- journal --------------------------------------------------------------------------

JOURNAL_EVENTS = Gauge("exmail_relay_journal_events", "Events stored in the journal.")
JOURNAL_BACKLOG_EVENTS = Gauge(
    "exmail_relay_journal_backlog_events", "Events not yet final for every sink."
)
JOURNAL_BACKLOG_BYTES = Gauge(
    "exmail_relay_journal_backlog_bytes", "Bytes of events not yet final for every sink."
)
JOURNAL_FILE_BYTES = Gauge("exmail_relay_journal_file_bytes", "Size of the journal database.")
JOURNAL_COMMITS = Gauge("exmail_relay_journal_commits", "Group commits since start.")
BACKPRESSURE = Gauge(
    "exmail_relay_backpressure", "1 while the journal is at its bound and listeners pause."
)

# -- sinks ----------------------------------------------------------------------------

SINK_BACKLOG = Gauge("exmail_relay_sink_backlog", "Pending deliveries per sink.", ["sink"])
SINK_OLDEST_PENDING = Gauge(
    "exmail_relay_sink_oldest_pending_seconds",
    "Age of the oldest pending delivery per sink (0 when none).",
    ["sink"],
)
SINK_CONNECTED = Gauge(
    "exmail_relay_sink_connected", "1 when the sink can deliver (connected, enabled).", ["sink"]
)
DELIVERIES = Counter("exmail_relay_deliveries", "Events delivered, per sink.", ["sink"])
DELIVERY_FAILURES = Counter(
    "exmail_relay_delivery_failures",
    "Failed delivery attempts per sink, by reason (retry, unavailable, dead, disabled).",
    ["sink", "reason"],
)
DEAD_LETTERS = Counter(
    "exmail_relay_dead_letters", "Deliveries that became dead letters, per sink.", ["sink"]
)
DELIVERY_LATENCY = Histogram(
    "exmail_relay_delivery_latency_seconds",
    "From journal commit to confirmed delivery, per sink.",
    ["sink"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 300),
)

# -- webhooks (labelled by sink name ``webhook:<name>``, never by URL) --------------------

WEBHOOK_OUTCOMES = ("2xx", "3xx", "4xx", "5xx", "timeout", "connection")
WEBHOOK_ATTEMPTS = Counter(
    "exmail_relay_webhook_attempts",
    "Webhook delivery attempts per endpoint, by outcome class "
    "(2xx, 3xx, 4xx, 5xx, timeout, connection).",
    ["sink", "outcome"],
)
WEBHOOK_ATTEMPT_SECONDS = Histogram(
    "exmail_relay_webhook_attempt_seconds",
    "Duration of one webhook attempt (request sent to response read), per endpoint.",
    ["sink"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
SINK_DISABLED = Gauge(
    "exmail_relay_sink_disabled",
    "1 while a sink is disabled (a webhook endpoint that answered 410), else 0.",
    ["sink"],
)
