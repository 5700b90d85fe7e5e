"""The sampler: a failing reading is seen (kept, logged) and survived; the sampling task
lives exactly as long as the app that owns it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from relay.ops.history import History
from relay.ops.metrics import Metrics, PrometheusObserver
from relay.ops.sampler import BACKLOG, Sampler


class Broken(Collector):
    """A family the sampler reads that fails to collect (a bug somewhere)."""

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(BACKLOG, "broken")

    def collect(self) -> Iterator[GaugeMetricFamily]:
        raise RuntimeError("collector broke")


def test_a_failing_reading_is_kept_logged_and_survived(caplog: pytest.LogCaptureFixture) -> None:
    registry = CollectorRegistry()
    broken = Broken()
    registry.register(broken)
    clock = iter(float(t) for t in range(100, 200))
    sampler = Sampler(registry, History(interval=1.0, span=60.0), clock=lambda: next(clock))
    with caplog.at_level(logging.INFO, logger="relay.ops.sampler"):
        sampler.sample()
        sampler.sample()  # the same trouble within a minute: not logged again
        assert sampler.last_error == "RuntimeError: collector broke"
        assert len(sampler.history) == 0
        registry.unregister(broken)
        sampler.sample()
    assert sampler.last_error is None and len(sampler.history) == 1
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["status history sample failed", "status history sampling works again"]


async def test_the_sampling_task_lives_as_long_as_its_app() -> None:
    observer = PrometheusObserver(Metrics(CollectorRegistry()))
    observer.sink("amqp").backlog(3, 1.0)
    sampler = Sampler(observer.metrics.registry, History(interval=0.05, span=10.0))
    app = web.Application()
    app.cleanup_ctx.append(sampler.context)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        for _ in range(100):
            if len(sampler.history) >= 3:
                break
            await asyncio.sleep(0.05)
        assert len(sampler.history) >= 3
        assert sampler.history.samples()[-1].backlog == {"amqp": 3.0}
        assert any(t.get_name() == "status history" for t in asyncio.all_tasks())
    finally:
        await runner.cleanup()
    assert not any(t.get_name() == "status history" for t in asyncio.all_tasks())
    stopped_at = len(sampler.history)
    await asyncio.sleep(0.2)
    assert len(sampler.history) == stopped_at
