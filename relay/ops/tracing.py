"""OpenTelemetry tracing: the spans behind :mod:`relay.runtime.tracing`, exported by OTLP.

Where it sits: imported only by :func:`relay.app.tracing.open_tracing`, and only when
the ``[otel]`` extra is installed and an ``OTEL_`` variable asks for traces; nothing
else in the relay imports OpenTelemetry. The SDK reads its own standard variables here
(``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER[_ARG]``,
``OTEL_EXPORTER_OTLP_*``, ``OTEL_BSP_*``); the relay adds no setting of its own.

One trace per listen answer that carries messages (docs/operations.md, "Tracing"):

- ``exmail.listen`` (root, CONSUMER): from the moment the ``listen`` went out to the
  end of its commit; its context is what the journal stores with each event and what
  the CloudEvent's ``traceparent`` attribute carries. A directory change expanded
  (``user/list``, ``user/get``) is ``exmail.directory``, the same way;
- ``journal.commit`` (INTERNAL, child of the answer): one per commit attempt;
- ``send <sink>`` (PRODUCER, child of the stored context, so also a retry hours later
  or after a restart): one per delivery attempt; its own context goes out as the AMQP
  header and the webhook header ``traceparent``, so a consumer's span is its child.

Attributes name the tenant, the sink, counts, the CloudEvent id and type, the attempt
number and its outcome: never an account, a mail subject, a URL or a secret.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

from opentelemetry import trace as api
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from relay import __version__
from relay.core.delivery import Delivered, Delivery, Outcome
from relay.runtime.tracing import Span, Trace, Tracing
from relay.sinks import Sink

__all__ = ["EXPORTERS", "OtelTracing"]

# The values of OTEL_TRACES_EXPORTER this build knows (besides "none").
EXPORTERS: Final = ("otlp", "console")
SCOPE: Final = "relay"
DEFAULT_SERVICE_NAME: Final = "exmail-relay"

_W3C = TraceContextTextMapPropagator()


class _OtelSpan(Span):
    def __init__(self, span: api.Span) -> None:
        self._span = span

    def __exit__(self, *exc_info: object) -> None:
        error = exc_info[1] if len(exc_info) > 1 else None
        if isinstance(error, BaseException):
            # The exception's type only: a journal error's text can name a file path.
            self._span.set_status(StatusCode.ERROR, type(error).__name__)
        self._span.end()

    def inserted(self, count: int) -> None:
        self._span.set_attribute("exmail.events.new", count)


class _OtelTrace(Trace, _OtelSpan):
    """An ``exmail.listen`` span, open while its answer's events are committed."""

    def __init__(self, tracer: api.Tracer, span: api.Span, tenant: str) -> None:
        super().__init__(span)
        self._tracer = tracer
        self._tenant = tenant
        self._context = api.set_span_in_context(span)
        carrier: dict[str, str] = {}
        _W3C.inject(carrier, context=self._context)
        self.traceparent = carrier.get("traceparent")
        self.tracestate = carrier.get("tracestate") or None

    def commit(self, events: int) -> Span:
        span = self._tracer.start_span(
            "journal.commit",
            context=self._context,
            kind=SpanKind.INTERNAL,
            attributes={"exmail.tenant": self._tenant, "exmail.events": events},
        )
        return _OtelSpan(span)


class OtelTracing(Tracing):
    """Traces with the OpenTelemetry SDK. Close with :meth:`close` (flushes the spans)."""

    enabled = True

    def __init__(self, exporters: Sequence[str]) -> None:
        unknown = set(exporters) - set(EXPORTERS)
        if unknown:
            raise ValueError(f"unknown trace exporter: {', '.join(sorted(unknown))}")
        resource = Resource.create({SERVICE_VERSION: __version__})
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
        # sampler=None: the SDK reads OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG.
        self._provider = TracerProvider(resource=resource)
        for name in exporters:
            self._provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
        self._tracer = self._provider.get_tracer(SCOPE, __version__)

    def __repr__(self) -> str:
        return "OtelTracing()"

    def answer(self, tenant: str, sent_ns: int, messages: int, events: int) -> Trace:
        attributes = {"exmail.listen.messages": messages, "exmail.events": events}
        return self._root("exmail.listen", tenant, sent_ns, attributes)

    def expansion(self, tenant: str, started_ns: int, events: int) -> Trace:
        return self._root("exmail.directory", tenant, started_ns, {"exmail.events": events})

    def _root(self, name: str, tenant: str, start_ns: int, attributes: dict[str, int]) -> Trace:
        span = self._tracer.start_span(
            name,
            context=Context(),  # a root: nothing upstream of an Exmail answer is traced
            kind=SpanKind.CONSUMER,
            start_time=start_ns,
            attributes={"exmail.tenant": tenant, **attributes},
        )
        return _OtelTrace(self._tracer, span, tenant)

    def sender(self, sink: Sink) -> Callable[[Delivery], Awaitable[Outcome]]:
        return functools.partial(self.send, sink)

    async def send(self, sink: Sink, delivery: Delivery) -> Outcome:
        parent = Context()  # a row journaled untraced (older, or tracing was off): a root
        if delivery.traceparent is not None:
            carrier = {"traceparent": delivery.traceparent}
            if delivery.tracestate:
                carrier["tracestate"] = delivery.tracestate
            parent = _W3C.extract(carrier)
        span = self._tracer.start_span(
            f"send {sink.name}",
            context=parent,
            kind=SpanKind.PRODUCER,
            attributes={
                "exmail.sink": sink.name,
                "exmail.tenant": delivery.tenant,
                "exmail.delivery.attempt": delivery.attempts + 1,
                "messaging.message.id": delivery.event_id,
                "cloudevents.event_id": delivery.event_id,
                "cloudevents.event_type": delivery.type,
            },
        )
        try:
            carrier = {}
            _W3C.inject(carrier, context=api.set_span_in_context(span))
            attempt = dataclasses.replace(
                delivery,
                traceparent=carrier.get("traceparent"),
                tracestate=carrier.get("tracestate") or None,
            )
            outcome = await sink.send(attempt)
        except BaseException as exc:  # a sink's bug, or the attempt cancelled at shutdown
            span.set_status(StatusCode.ERROR, type(exc).__name__)
            raise
        else:
            span.set_attribute("exmail.delivery.outcome", type(outcome).__name__.lower())
            if not isinstance(outcome, Delivered):
                # The same text the status page and the dead-letter list show.
                span.set_status(StatusCode.ERROR, getattr(outcome, "error", None))
            return outcome
        finally:
            span.end()

    async def close(self) -> None:
        """Flush the spans still queued and stop the exporters. In a thread: the export
        is a blocking HTTP call, and its receiver may be served by this very loop."""
        await asyncio.to_thread(self._provider.shutdown)


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter(out=sys.stderr)  # stdout is the console sink's
    # Reads OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, _HEADERS, _TIMEOUT, _COMPRESSION, ...
    return OTLPSpanExporter()
