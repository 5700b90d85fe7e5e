"""The status page's history and charts: the series math, the SVG, and the reading of a
real registry. Pure: no I/O, no clock."""

from __future__ import annotations

import math
import re

import pytest
from prometheus_client import CollectorRegistry

from relay.ops.charts import Chart, Line, format_value, nice_ceiling, render_chart
from relay.ops.history import (
    History,
    Sample,
    gauge_series,
    latency_series,
    quantile,
    rate_series,
)
from relay.ops.metrics import Metrics, PrometheusObserver
from relay.ops.page_charts import MAX_SINK_LINES, build_charts, render_charts
from relay.ops.sampler import FAMILIES, read_sample

T0 = 1_800_000_000.0


def test_the_ring_keeps_the_last_span_and_restarts_on_a_clock_step_back() -> None:
    history = History(interval=10.0, span=60.0)
    for i in range(20):
        history.add(Sample(T0 + 10 * i))
    assert len(history) == 7
    assert [s.at for s in history] == [T0 + 10 * i for i in range(13, 20)]
    history.add(Sample(T0))  # the wall clock stepped back: the old points would lie
    assert [s.at for s in history.samples()] == [T0]
    with pytest.raises(ValueError, match="interval"):
        History(interval=0)


def test_rates_are_per_minute_and_survive_a_counter_reset() -> None:
    samples = [
        Sample(T0, events_in=100),
        Sample(T0 + 10, events_in=110),  # 10 in 10 s: 60/min
        Sample(T0 + 30, events_in=130),  # 20 in 20 s: 60/min
        Sample(T0 + 40, events_in=5),  # reset: 5 since, in 10 s
        Sample(T0 + 40, events_in=7),  # no time passed: no point
    ]
    assert rate_series(samples, lambda s: s.events_in) == [
        (T0 + 10, 60.0),
        (T0 + 30, 60.0),
        (T0 + 40, 30.0),
    ]
    assert rate_series(samples[:1], lambda s: s.events_in) == []


def test_gauges_leave_a_gap_before_a_sink_appears() -> None:
    samples = [Sample(T0), Sample(T0 + 10, backlog={"amqp": 4.0})]
    assert gauge_series(samples, "amqp") == [(T0, None), (T0 + 10, 4.0)]


def test_quantile_interpolates_inside_the_bucket_like_histogram_quantile() -> None:
    buckets = {0.1: 50.0, 0.5: 90.0, 1.0: 100.0, math.inf: 100.0}
    assert quantile(0.5, buckets) == pytest.approx(0.1)
    assert quantile(0.7, buckets) == pytest.approx(0.3)  # 20 of 40 into (0.1, 0.5]
    assert quantile(0.25, buckets) == pytest.approx(0.05)
    assert quantile(0.99, buckets) == pytest.approx(0.95)
    # A rank in +Inf answers the highest finite bound.
    assert quantile(0.99, {0.1: 10.0, math.inf: 20.0}) == pytest.approx(0.1)
    assert quantile(0.5, {}) is None
    assert quantile(0.5, {0.1: 0.0, math.inf: 0.0}) is None


def test_latency_is_taken_over_the_minute_before_each_point() -> None:
    def at(seconds: float, fast: float, slow: float) -> Sample:
        return Sample(T0 + seconds, latency={0.01: fast, 1.0: fast + slow, math.inf: fast + slow})

    samples = [
        at(0, 0, 0),
        at(30, 100, 0),  # 100 fast deliveries
        at(60, 100, 0),  # nothing new, but the window still holds them
        at(90, 100, 100),  # window (30, 90]: 100 slow ones only
        at(150, 100, 100),  # nothing delivered in the last minute: a gap
    ]
    series = latency_series(samples, 0.5)
    assert [at for at, _ in series] == [T0 + 30, T0 + 60, T0 + 90, T0 + 150]
    values = [v for _, v in series]
    assert values[0] == pytest.approx(0.005)
    assert values[1] == pytest.approx(0.005)
    assert values[2] == pytest.approx(0.01 + 0.99 * 0.5)
    assert values[3] is None


def test_nice_ceiling_and_formats() -> None:
    assert [nice_ceiling(v) for v in (0, 0.3, 1, 1.2, 2.2, 4, 7, 120, 9_001)] == [
        1.0,
        0.5,
        1.0,
        2.0,
        2.5,
        5.0,
        10.0,
        200.0,
        10_000.0,
    ]
    assert format_value(120.0, "/min") == "120/min"
    assert format_value(12_500.0, "") == "12.5k"
    assert format_value(0.25, "s") == "250 ms"
    assert format_value(1.5, "s") == "1.5 s"
    assert format_value(0.0, "s") == "0 s"
    assert format_value(None, "") == "–"


def test_an_empty_chart_says_no_data_yet() -> None:
    svg = render_chart(Chart("x", "Empty", "", [Line("in", [])]), start=T0, end=T0 + 3600)
    assert "no data yet" in svg and "<polyline" not in svg
    assert svg.startswith('<svg class="chart" id="chart-x"') and svg.endswith("</svg>")


def test_a_chart_has_axes_values_and_escaped_labels() -> None:
    points = [(T0 + 60 * i, float(i)) for i in range(61)]
    chart = Chart("b", "Backlog", "", [Line("webhook:<crm>", points)])
    svg = render_chart(chart, start=T0, end=T0 + 3600)
    assert "no data yet" not in svg
    assert "webhook:&lt;crm&gt; 60" in svg and "<crm>" not in svg  # legend: the latest value
    labels = re.findall(r">([^<>]+)</text>", svg)
    assert {"0", "20", "40", "60"} <= set(labels)  # y axis in round steps
    assert "80" not in labels
    assert {"08:00", "08:15", "08:30", "08:45", "09:00 UTC"} <= set(labels)
    polyline = re.search(r'<polyline points="([^"]+)"', svg)
    assert polyline is not None and len(polyline[1].split()) == 61
    # A gap splits the line; a lone point is a dot.
    gapped = Chart("g", "Gaps", "s", [Line("p50", [(T0, 1.0), (T0 + 60, None), (T0 + 120, 2.0)])])
    svg = render_chart(gapped, start=T0, end=T0 + 3600)
    assert svg.count("<circle") == 2 and "<polyline" not in svg


def test_page_charts_from_a_history() -> None:
    samples = [
        Sample(
            T0 + 10 * i,
            events_in=20.0 * i,
            events_out=18.0 * i,
            listen_failures=float(i // 6),
            backlog={f"webhook:s{n}": float(n * i) for n in range(MAX_SINK_LINES + 2)},
            latency={0.01: 5.0 * i, 0.1: 9.0 * i, math.inf: 10.0 * i},
        )
        for i in range(361)
    ]
    charts = build_charts(samples)
    assert [c.key for c in charts] == ["events", "backlog", "latency", "listen-failures"]
    events = charts[0].lines
    assert events[0].points[-1] == (T0 + 3600, pytest.approx(120.0))
    assert events[1].points[-1] == (T0 + 3600, pytest.approx(108.0))
    backlog = charts[1]
    assert len(backlog.lines) == MAX_SINK_LINES and backlog.note == "+2 more sinks (smaller)"
    assert backlog.lines[0].label == f"webhook:s{MAX_SINK_LINES + 1}"  # the biggest first
    section = render_charts(samples, now=T0 + 3600, span=3600)
    assert section.count("<svg") == 4 and section.count("<polyline") >= 4
    assert "<h2>Last 60 minutes <small" in section and "no data yet" not in section
    assert "drawn 09:00:00 UTC; reload for newer points" in section
    empty = render_charts([], now=T0, span=3600, error="ValueError: boom")
    assert empty.count("no data yet") == 4
    assert "sampling failed: ValueError: boom" in empty


def test_read_sample_sums_the_relays_own_counters() -> None:
    observer = PrometheusObserver(Metrics(CollectorRegistry()))
    acme = observer.tenant("acme")
    for outcome in ("data", "keepalive", "keepalive", "transient", "token", "timeout"):
        acme.listen(outcome)
    observer.tenant("beta").listen("config")
    amqp, hook = observer.sink("amqp"), observer.sink("webhook:crm")
    for latency in (0.002, 0.003, 0.2):
        amqp.delivered(latency)
    hook.delivered(2.0)
    amqp.backlog(7, 1.0)
    hook.backlog(0, 0.0)
    metrics = observer.metrics
    metrics.events_ingested.labels("acme", "exmail.mail.new").inc(5)
    metrics.events_ingested.labels("beta", "exmail.mail.unread").inc(2)

    registry = metrics.registry.restricted_registry(FAMILIES)
    sample = read_sample(registry.collect(), T0)
    assert sample.at == T0
    assert sample.events_in == 7 and sample.events_out == 4
    assert sample.listen_failures == 4  # transient, token, timeout, config
    assert sample.backlog == {"amqp": 7.0, "webhook:crm": 0.0}
    assert sample.latency[math.inf] == 4
    assert sample.latency[0.0025] == 1 and sample.latency[0.005] == 2
    assert sample.latency[0.25] == 3 and sample.latency[2.5] == 4
    assert quantile(0.5, sample.latency) == pytest.approx(0.005)
