"""``events_ingested`` counts every committed event by tenant and type, whatever mix of
types one commit holds (the counter is bumped once per type of a batch, issue 20)."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from relay.core import events
from relay.ops.metrics import Metrics, PrometheusObserver

NOW = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)


def mail(n: int) -> events.Event:
    return events.mail_new(
        tenant="acme",
        user="bob@acme.test",
        mail_id=f"m{n}",
        sender="a@example.com",
        receiver="bob@acme.test",
        subject="s",
        summary="",
        unread=n,
        now=NOW,
    )


def unread(n: int) -> events.Event:
    return events.mail_unread(tenant="acme", user="bob@acme.test", unread=n, now=NOW)


def test_committed_events_are_counted_by_tenant_and_type() -> None:
    metrics = Metrics(CollectorRegistry())
    observer = PrometheusObserver(metrics)
    acme, beta = observer.tenant("acme"), observer.tenant("beta")

    acme.committed([mail(1), unread(1), mail(2), mail(3), unread(2)])
    acme.committed([mail(4)])
    acme.committed([])
    beta.committed([unread(7)])

    def count(tenant: str, event_type: str) -> float:
        value = metrics.registry.get_sample_value(
            "exmail_relay_events_ingested_total", {"tenant": tenant, "type": event_type}
        )
        return 0.0 if value is None else value

    assert count("acme", events.MAIL_NEW) == 4
    assert count("acme", events.MAIL_UNREAD) == 2
    assert count("beta", events.MAIL_UNREAD) == 1
    assert count("beta", events.MAIL_NEW) == 0
