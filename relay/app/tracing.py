"""Whether the relay traces, decided once at start-up from the standard ``OTEL_`` variables.

Where it sits: :func:`relay.app.wiring.build_service` opens :func:`open_tracing` and
hands the tracer to the listeners and drainers. The relay has no tracing setting of
its own (docs/operations.md, "Tracing"). Tracing is on when all of these hold:

- ``OTEL_SDK_DISABLED`` is not ``true``;
- ``OTEL_TRACES_EXPORTER`` names an exporter (``otlp``, ``console``; ``none`` is off),
  or, with it unset, ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
  ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set (then: ``otlp``). The standard's default
  endpoint (``localhost:4318``) alone does not turn tracing on: a relay upgraded
  together with the extra sends nothing until someone says where to;
- the ``[otel]`` extra is installed; if it is not, a warning says so and the relay
  runs untraced.

Otherwise the tracer is the no-op :class:`relay.runtime.tracing.Tracing`, and nothing
of OpenTelemetry is imported: this module looks for it only once tracing is asked for.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Mapping
from typing import Final

from relay.runtime.tracing import Tracing

__all__ = ["open_tracing", "wanted_exporters"]

log = logging.getLogger("relay.app.tracing")

_ENDPOINTS: Final = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_PROTOCOLS: Final = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")


def wanted_exporters(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The trace exporters the ``OTEL_`` variables in ``environ`` ask for (empty: off)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return ()
    named = environ.get("OTEL_TRACES_EXPORTER", "").strip()
    if named:
        chosen = [name.strip().lower() for name in named.split(",") if name.strip()]
        return tuple(dict.fromkeys(name for name in chosen if name != "none"))
    if any(environ.get(name, "").strip() for name in _ENDPOINTS):
        return ("otlp",)
    return ()


@contextlib.asynccontextmanager
async def open_tracing(environ: Mapping[str, str] | None = None) -> AsyncIterator[Tracing]:
    """The tracer for ``environ`` (default: the process's); on exit, the spans still
    queued are flushed."""
    env = os.environ if environ is None else environ
    exporters = wanted_exporters(env)
    if not exporters:
        yield Tracing()
        return
    try:
        from relay.ops.tracing import EXPORTERS, OtelTracing
    except ImportError as exc:
        log.warning(
            "OTEL_ variables ask for traces but the [otel] extra is not installed;"
            " tracing is off (pip install 'exmail-relay[otel]')",
            extra={"missing": exc.name or "opentelemetry"},
        )
        yield Tracing()
        return
    unknown = [name for name in exporters if name not in EXPORTERS]
    if unknown:
        log.warning(
            "OTEL_TRACES_EXPORTER names exporters this relay does not have; ignored",
            extra={"ignored": unknown, "known": list(EXPORTERS)},
        )
    protocol = next((env[name] for name in _PROTOCOLS if env.get(name)), "http/protobuf")
    if "otlp" in exporters and protocol.strip() != "http/protobuf":
        log.warning(
            "only OTLP over HTTP (http/protobuf) is installed; exporting with it",
            extra={"asked": protocol},
        )
    known = [name for name in exporters if name in EXPORTERS]
    if not known:
        yield Tracing()
        return
    tracing = OtelTracing(known)
    log.info("tracing on", extra={"exporters": known})
    try:
        yield tracing
    finally:
        await tracing.close()
