"""Samples the relay's own counters into the status page's :class:`History`.

The thin shell around :mod:`relay.ops.history`: :func:`read_sample` turns the Prometheus
families the relay exports (the registry ``/metrics`` serves; only the five families
below are collected) into a :class:`Sample`; :class:`Sampler` does that every
``interval`` seconds. The ops app owns the sampling task (:meth:`Sampler.context`, an
aiohttp cleanup context: started with the server, cancelled and awaited when it
stops). A reading that fails is logged (once a minute while it lasts) and shown on the
page; the next one tries again. A task that dies anyway is logged, and its exception
raised when the server stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Iterable

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

from relay.core.throttle import LogThrottle
from relay.ops.history import History, Sample

__all__ = ["FAMILIES", "LISTEN_OK", "Sampler", "read_sample"]

log = logging.getLogger("relay.ops.sampler")

EVENTS_IN = "exmail_relay_events_ingested_total"
EVENTS_OUT = "exmail_relay_deliveries_total"
LISTENS = "exmail_relay_listen_requests_total"
BACKLOG = "exmail_relay_sink_backlog"
LATENCY = "exmail_relay_delivery_latency_seconds_bucket"
FAMILIES = (EVENTS_IN, EVENTS_OUT, LISTENS, BACKLOG, LATENCY)
# Listen outcomes that are answers; every other outcome is a failure.
LISTEN_OK = frozenset({"data", "keepalive"})


def read_sample(metrics: Iterable[Metric], at: float) -> Sample:
    """One :class:`Sample` from collected families (pure: no clock, no registry)."""
    events_in = events_out = failures = 0.0
    backlog: dict[str, float] = {}
    latency: dict[float, float] = {}
    for metric in metrics:
        for s in metric.samples:
            if s.name == EVENTS_IN:
                events_in += s.value
            elif s.name == EVENTS_OUT:
                events_out += s.value
            elif s.name == LISTENS and s.labels.get("outcome") not in LISTEN_OK:
                failures += s.value
            elif s.name == BACKLOG:
                sink = s.labels.get("sink", "")
                backlog[sink] = backlog.get(sink, 0.0) + s.value
            elif s.name == LATENCY:
                le = float(s.labels.get("le", "+Inf"))
                latency[le] = latency.get(le, 0.0) + s.value
    if latency and math.inf not in latency:
        latency[math.inf] = max(latency.values())
    return Sample(at, events_in, events_out, failures, backlog, latency)


class Sampler:
    """Reads ``registry`` into ``history`` every ``history.interval`` seconds."""

    def __init__(
        self,
        registry: CollectorRegistry,
        history: History,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.history = history
        self._source = registry.restricted_registry(FAMILIES)
        self._clock = clock
        self._monotonic = monotonic
        self._throttle = LogThrottle(every=60.0)
        self.last_error: str | None = None

    def sample(self) -> None:
        """Take one reading now; a failure is logged, kept in ``last_error`` and survived."""
        try:
            self.history.add(read_sample(self._source.collect(), self._clock()))
        except Exception as exc:  # a bug in a reading must not stop the next ones
            self.last_error = f"{type(exc).__name__}: {exc}"
            if (left_out := self._throttle.admit(self._monotonic())) is not None:
                log.exception("status history sample failed", extra={"suppressed": left_out})
        else:
            if self.last_error is not None:
                self.last_error = None
                self._throttle.reset()
                log.info("status history sampling works again")

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.history.interval)

    async def context(self, app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup context: the sampling task lives as long as the server."""
        task = asyncio.create_task(self.run(), name="status history")
        task.add_done_callback(_report_crash)
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("status history sampler died", exc_info=exc)
