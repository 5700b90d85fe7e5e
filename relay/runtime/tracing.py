"""Tracing's one seam: what the listener and the drainers call, and the no-op behind it.

Where it sits: the listener opens a :class:`Trace` per listen answer that carries
messages (:meth:`Tracing.answer`), its directory worker one per directory change
expanded (:meth:`Tracing.expansion`), and a commit span inside it for each journal commit
(:meth:`Trace.commit`); the journal stores the answer's context (``traceparent``,
``tracestate``) with each event; every delivery attempt goes through
:meth:`Tracing.send` when tracing (the drainer calls what :meth:`Tracing.sender` gave it).

This module is the no-op: what runs without the ``[otel]`` extra, or with it and no
``OTEL_`` variable that asks for traces (:mod:`relay.app.tracing` decides at start-up).
It imports nothing of OpenTelemetry, and its hot-path calls allocate nothing:
:meth:`Tracing.answer` hands back one shared :data:`NO_TRACE`, and :meth:`Tracing.sender`
hands the drainer ``sink.send`` itself. The OpenTelemetry implementation
(:class:`relay.ops.tracing.OtelTracing`) subclasses these classes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final, Self

from relay.core.delivery import Delivery, Outcome
from relay.sinks import Sink

__all__ = ["NO_SPAN", "NO_TRACE", "Span", "Trace", "Tracing"]


class Span:
    """One span as a context manager (the no-op: nothing is recorded). An exception
    that leaves the block marks the span failed."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def inserted(self, count: int) -> None:
        """A journal commit's span: how many of its events were new (not duplicates)."""


class Trace(Span):
    """The trace of one listen answer, open while its events are committed.

    ``traceparent`` and ``tracestate`` are its W3C context, which the journal stores
    with each event (``None``: not traced); :meth:`commit` opens a journal commit's span.
    """

    traceparent: str | None = None
    tracestate: str | None = None

    def commit(self, events: int) -> Span:
        return NO_SPAN


NO_SPAN: Final = Span()
NO_TRACE: Final = Trace()


class Tracing:
    """The tracer the runtime is given; this one traces nothing (``enabled`` False)."""

    enabled: bool = False

    def answer(self, tenant: str, sent_ns: int, messages: int, events: int) -> Trace:
        """The trace of one listen answer of ``tenant``: its listen was sent at
        ``sent_ns`` (epoch ns); it held ``messages`` messages, which made ``events``."""
        return NO_TRACE

    def expansion(self, tenant: str, started_ns: int, events: int) -> Trace:
        """The trace of one directory change of ``tenant`` expanded (``user/list``,
        ``user/get``) from ``started_ns`` (epoch ns) into ``events`` events."""
        return NO_TRACE

    def sender(self, sink: Sink) -> Callable[[Delivery], Awaitable[Outcome]]:
        """What a drainer calls for each attempt: ``sink.send`` itself (no extra call
        per attempt), or with tracing on, :meth:`send` bound to ``sink``."""
        return sink.send

    def send(self, sink: Sink, delivery: Delivery) -> Awaitable[Outcome]:
        """One delivery attempt: ``sink.send(delivery)``, in its span when tracing."""
        return sink.send(delivery)
