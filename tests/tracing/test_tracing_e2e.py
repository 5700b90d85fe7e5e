"""Tracing end to end, on real parts: the emulator, a relay with the standard ``OTEL_``
variables set, the real RabbitMQ, a real webhook receiver, and a real OTLP/HTTP
receiver decoding the exports with the official protobuf definitions.

One mail is one trace: ``exmail.listen`` (the root) -> ``journal.commit`` and one
``send <sink>`` per delivery attempt; the CloudEvent carries the root's context, the
AMQP and webhook headers the attempt's, so a consumer's spans join the same trace.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from cloudevents.core.bindings import http as cloudevents_http
from standardwebhooks.webhooks import Webhook

from relay.emulator import Emulator
from relay.journal import Journal
from tests.pipeline.support import Broker, Consumer, accounts, control, settings_for
from tests.support import eventually, running_relay
from tests.tracing.conftest import OtlpReceiver, ReceivedSpan
from tests.tracing.waterfall import waterfall_svg
from tests.webhook.conftest import Answer, Receiver, hook, make_secret

SUBJECT = "quarterly numbers, do not forward"
# opentelemetry.proto.trace.v1.Span.SpanKind and Status.StatusCode
KIND_INTERNAL, KIND_PRODUCER, KIND_CONSUMER = 1, 4, 5
STATUS_ERROR = 2


def one(spans: list[ReceivedSpan]) -> ReceivedSpan:
    assert len(spans) == 1, spans
    return spans[0]


def traceparent(trace_id: str, span: ReceivedSpan, flags: str) -> str:
    return f"00-{trace_id}-{span.span_id}-{flags}"


@pytest.mark.rabbitmq
async def test_one_mail_is_one_trace_from_listen_to_publish(
    emulator: Emulator,
    broker: Broker,
    receiver: Receiver,
    traced: OtlpReceiver,
    tmp_path: Path,
) -> None:
    secret = make_secret()
    hooks = [hook(receiver, "oa", secret=[secret], types=["exmail.mail.new"])]
    settings = settings_for(emulator, tmp_path, broker, webhooks=hooks)
    user = (await accounts(emulator))[0]
    async with Consumer(broker) as consumer, running_relay(settings):
        await consumer.wait_for(1)  # the bootstrap's directory.changed
        await control(emulator, "mail", {"to": user, "subject": SUBJECT})
        await consumer.wait_for(2)
        (posted,) = await receiver.wait_for("oa", 1, within=15)
    # The relay is closed: every span was flushed to the receiver on the way out.

    (message,) = [m for m in consumer.messages if m.type == "exmail.mail.new"]
    event = json.loads(message.body)
    version, trace_id, root_id, flags = event["traceparent"].split("-")
    assert version == "00"
    assert int(flags, 16) & 1  # sampled (W3C level 2 may add 0x02: a random trace id)
    spans = traced.trace(trace_id)

    root = one(traced.named(trace_id, "exmail.listen"))
    assert root.parent_span_id == ""
    assert root.span_id == root_id
    assert root.kind == KIND_CONSUMER
    assert root.attributes == {
        "exmail.tenant": "acme",
        "exmail.listen.messages": 1,
        "exmail.events": 1,
    }
    assert root.resource["service.name"] == "relay-under-test"  # OTEL_SERVICE_NAME
    assert root.scope == "relay"

    commit = one(traced.named(trace_id, "journal.commit"))
    assert commit.parent_span_id == root.span_id
    assert commit.kind == KIND_INTERNAL
    assert commit.attributes["exmail.events.new"] == 1
    assert root.start_ns <= commit.start_ns <= commit.end_ns <= root.end_ns

    publish = one(traced.named(trace_id, "send amqp"))
    post = one(traced.named(trace_id, "send webhook:oa"))
    for attempt in (publish, post):
        assert attempt.parent_span_id == root.span_id
        assert attempt.kind == KIND_PRODUCER
        assert attempt.start_ns >= commit.end_ns
        assert attempt.attributes["cloudevents.event_id"] == event["id"]
        assert attempt.attributes["cloudevents.event_type"] == "exmail.mail.new"
        assert attempt.attributes["exmail.delivery.attempt"] == 1
        assert attempt.attributes["exmail.delivery.outcome"] == "delivered"
    assert {s.name for s in spans} == {
        "exmail.listen",
        "journal.commit",
        "send amqp",
        "send webhook:oa",
    }

    # The AMQP consumer: the CloudEvent carries the event's context (the listen
    # answer), the message header the publish attempt's; both are this trace.
    assert message.headers["traceparent"] == traceparent(trace_id, publish, flags)
    # The webhook receiver: the same, and the signature covers the body's traceparent.
    assert posted.headers["traceparent"] == traceparent(trace_id, post, flags)
    payload = Webhook(secret).verify(posted.body, posted.headers)
    assert payload["traceparent"] == event["traceparent"] == traceparent(trace_id, root, flags)
    # A CloudEvents SDK reads the attribute as the distributed-tracing extension.
    read = cloudevents_http.from_http_event(
        cloudevents_http.HTTPMessage(headers=posted.headers, body=posted.body)
    )
    assert read.get_extension("traceparent") == event["traceparent"]

    # docs/images/trace.svg was drawn this way (copy tmp_path's file to refresh it).
    picture = waterfall_svg(spans, "one mail: listen answer -> journal -> RabbitMQ, webhook")
    (tmp_path / "trace.svg").write_text(picture, encoding="utf-8")
    assert all(f">{span.name}<" in picture for span in spans)

    # Nothing of the mail is in any span: no subject, no account.
    for span in traced.spans:
        text = json.dumps(span.attributes) + span.name + span.status_message
        assert SUBJECT not in text and user.lower() not in text.lower()


async def test_a_retry_after_a_restart_joins_the_events_trace(
    emulator: Emulator, receiver: Receiver, traced: OtlpReceiver, tmp_path: Path
) -> None:
    """The trace context is stored with the event: an attempt in the next process,
    after the endpoint was enabled again, is one more child of the same listen answer."""
    secret = make_secret()
    receiver.script("oa", Answer(410))  # the first attempt disables the endpoint
    hooks = [hook(receiver, "oa", secret=[secret], types=["exmail.mail.new"])]
    settings = settings_for(emulator, tmp_path, webhooks=hooks)
    user = (await accounts(emulator))[0]
    async with running_relay(settings) as run:
        await control(emulator, "mail", {"to": user})
        (refused,) = await receiver.wait_for("oa", 1, status=410, within=15)
        await eventually(
            lambda: run.service.drainers[0].disabled_reason is not None, what="disabled"
        )
    async with Journal(tmp_path / "journal.sqlite3") as journal:
        await journal.set_disabled("webhook:oa", False)  # exmail-relay endpoint enable oa
    async with running_relay(settings):
        (posted,) = await receiver.wait_for("oa", 1, within=15)

    event = Webhook(secret).verify(posted.body, posted.headers)
    assert refused.body == posted.body  # the journaled CloudEvent, its traceparent too
    trace_id, root_id, flags = event["traceparent"].split("-")[1:]
    root = one(traced.named(trace_id, "exmail.listen"))
    assert root.span_id == root_id
    first, second = sorted(traced.named(trace_id, "send webhook:oa"), key=lambda s: s.start_ns)
    assert first.parent_span_id == second.parent_span_id == root.span_id
    assert first.status_code == STATUS_ERROR
    assert first.attributes["exmail.delivery.outcome"] == "disable"
    assert second.attributes["exmail.delivery.outcome"] == "delivered"
    assert second.attributes["exmail.delivery.attempt"] >= 2
    assert refused.headers["traceparent"] == traceparent(trace_id, first, flags)
    assert posted.headers["traceparent"] == traceparent(trace_id, second, flags)


async def test_a_directory_change_is_one_trace_too(
    emulator: Emulator, receiver: Receiver, traced: OtlpReceiver, tmp_path: Path
) -> None:
    """The directory worker's expansion (user/list, user/get) is the root of the trace
    of the events it commits together: directory.changed and each user event."""
    secret = make_secret()
    settings = settings_for(emulator, tmp_path, webhooks=[hook(receiver, "oa", secret=[secret])])
    alias = "newbie@example.com"
    async with running_relay(settings):
        await receiver.wait_for("oa", 1, within=15)  # the bootstrap's directory.changed
        await control(emulator, "user", {"action": "add", "alias": alias, "name": "New Bie"})
        posted = await receiver.wait_for("oa", 3, within=15)

    payloads = [Webhook(secret).verify(p.body, p.headers) for p in posted]
    (bootstrap,) = [p for p in payloads if "traceparent" not in p]
    assert bootstrap["type"] == "exmail.directory.changed"  # at start-up, outside any trace
    by_type = {p["type"]: p for p in payloads if "traceparent" in p}
    assert set(by_type) == {"exmail.directory.changed", "exmail.user.added"}
    changed, added = by_type["exmail.directory.changed"], by_type["exmail.user.added"]
    assert changed["traceparent"] == added["traceparent"]
    trace_id, root_id = added["traceparent"].split("-")[1:3]
    root = one(traced.named(trace_id, "exmail.directory"))
    assert (root.span_id, root.parent_span_id) == (root_id, "")
    assert root.attributes == {"exmail.tenant": "acme", "exmail.events": 2}
    commit = one(traced.named(trace_id, "journal.commit"))
    assert commit.parent_span_id == root.span_id
    sends = traced.named(trace_id, "send webhook:oa")
    assert len(sends) == 2 and {s.parent_span_id for s in sends} == {root.span_id}
    for span in traced.spans:
        assert alias not in json.dumps(span.attributes) + span.name + span.status_message


@pytest.mark.timeout(60)
async def test_a_collector_that_is_down_holds_up_no_event(
    emulator: Emulator,
    receiver: Receiver,
    traced: OtlpReceiver,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Spans that cannot be exported are dropped by the SDK's background thread: the
    events still go out, traced, and the relay still stops."""
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{closed}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    secret = make_secret()
    hooks = [hook(receiver, "oa", secret=[secret], types=["exmail.mail.new"])]
    settings = settings_for(emulator, tmp_path, webhooks=hooks)
    user = (await accounts(emulator))[0]
    async with running_relay(settings):
        await control(emulator, "mail", {"to": user})
        (posted,) = await receiver.wait_for("oa", 1, within=15)
    event = Webhook(secret).verify(posted.body, posted.headers)
    assert event["traceparent"].split("-")[1] == posted.headers["traceparent"].split("-")[1]
    assert traced.spans == []  # nothing reached the (other) receiver either
