"""The chart's Grafana dashboard and alert rules ask only for what a real relay exports.

The chart is rendered by Helm's engine (as in test_ship_chart.py); every PromQL
expression of the dashboard (panel targets, the namespace variable) and of the
PrometheusRule is syntax-checked by ``promtool check rules`` and read by
:mod:`tests.ship.promql` for its metric selectors and ``by (...)`` labels. A relay built
from settings in code runs in-process in lease mode with an AMQP sink and a webhook sink
(a real HTTP receiver) against the emulator, delivers a mail, and its ``/metrics`` is the
list of what exists, together with every family :class:`relay.ops.metrics.Metrics`
defines. A metric renamed on either side, or a label dropped, fails here with its name.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import helm_python as helm
import pytest
import yaml
from aiohttp import web
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from relay.emulator import Emulator
from relay.ops.metrics import Metrics, PrometheusObserver
from tests.ops.conftest import Control, settings, tenant
from tests.ship import promql
from tests.ship.test_ship_chart import CHART, FULL, render
from tests.support import AMQP_URL, delete_lease_names, eventually, running_relay

# Labels Prometheus adds to every series it scrapes through the chart's ServiceMonitor
# (the target's labels), and the one metric Prometheus makes itself.
TARGET_LABELS = frozenset({"namespace", "pod", "service", "job", "instance", "container",
                           "endpoint"})  # fmt: skip
SCRAPE = {"up": TARGET_LABELS}
SECRET = "d" * 32
WHSEC = "whsec_" + base64.b64encode(bytes(range(32))).decode()
# Grafana's variables, replaced for promtool (Grafana does the same before it queries).
GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


# -- what the chart asks for ------------------------------------------------------------


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # rows hold panels


def queries(values: dict[str, Any] | None = None) -> dict[str, str]:
    """Where -> PromQL, for every query the rendered chart ships (alerts and dashboard)."""
    with helm.Chart.load(CHART) as chart:
        objects = render(chart, values if values is not None else FULL)
    found: dict[str, str] = {}
    for obj in objects:
        if obj["kind"] == "PrometheusRule":
            for group in obj["spec"]["groups"]:
                for rule in group["rules"]:
                    found[f"alert {rule['alert']}"] = rule["expr"]
        if obj["kind"] == "ConfigMap" and "exmail-relay.json" in obj["data"]:
            dashboard = json.loads(obj["data"]["exmail-relay.json"])
            for panel in _panels(dashboard["panels"]):
                for n, target in enumerate(panel.get("targets", [])):
                    found[f"panel {panel['title']!r} target {n}"] = target["expr"]
            for var in dashboard["templating"]["list"]:
                if var["type"] == "query":
                    found[f"variable ${var['name']}"] = var["query"]
    return found


def legends() -> dict[str, tuple[str, str]]:
    """Where -> (PromQL, legendFormat), for every dashboard target with a legend."""
    dashboard = json.loads((CHART / "files" / "dashboard.json").read_text())
    return {
        f"panel {panel['title']!r} target {n}": (target["expr"], target["legendFormat"])
        for panel in _panels(dashboard["panels"])
        for n, target in enumerate(panel.get("targets", []))
        if target.get("legendFormat")
    }


def documented_alerts() -> dict[str, str]:
    """Where -> PromQL, for the alerts docs/operations.md suggests (placeholders filled)."""
    text = (CHART.parents[1] / "docs" / "operations.md").read_text()
    block = re.search(r"## Suggested alerts.*?```yaml\n(.*?)```", text, re.DOTALL)
    assert block, "docs/operations.md lost its suggested alerts"
    rules = yaml.safe_load(block.group(1).replace("<max_events>", "100000"))
    return {f"docs alert {rule['alert']}": rule["expr"] for rule in rules}


def for_promtool(expr: str) -> str:
    """A dashboard query as Grafana sends it (variables filled in)."""
    for name, value in GRAFANA_VARS.items():
        expr = expr.replace(name, value)
    return re.sub(r"\$(\w+)", r"\1", expr)  # $namespace in a matcher's string


def used(where: str, expr: str) -> tuple[promql.Expression, str | None]:
    """The expression behind a query; Grafana's label_values(expr, label) names a label."""
    match = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", expr, re.DOTALL)
    if match:
        return promql.read(match.group(1)), match.group(2)
    return promql.read(expr), None


# -- what the relay exports -------------------------------------------------------------


def series_of(kind: str, name: str) -> list[tuple[str, tuple[str, ...]]]:
    """The sample names of a family of ``kind`` (and the extra labels each carries)."""
    if kind == "counter":
        return [(f"{name}_total", ()), (f"{name}_created", ())]
    if kind == "histogram":
        return [(f"{name}_bucket", ("le",)), (f"{name}_sum", ()), (f"{name}_count", ()),
                (f"{name}_created", ())]  # fmt: skip
    if kind == "info":
        return [(f"{name}_info", ())]
    return [(name, ())]


def defined() -> dict[str, set[str]]:
    """Sample name -> label names, from the families :class:`Metrics` defines."""
    metrics = Metrics(CollectorRegistry())
    exported: dict[str, set[str]] = defaultdict(set)
    for value in vars(metrics).values():
        labelnames = getattr(value, "_labelnames", None)  # prometheus-client's collectors
        if labelnames is None:
            continue
        for family in value.describe():
            for sample, extra in series_of(family.type, family.name):
                exported[sample] |= set(labelnames) | set(extra)
    exported["exmail_relay_build_info"] |= {"version", "python"}
    return exported


def scraped(text: str) -> dict[str, set[str]]:
    """Sample name -> label names, from one /metrics answer (families without samples
    still name their series)."""
    exported: dict[str, set[str]] = defaultdict(set)
    for family in text_string_to_metric_families(text):
        for sample, extra in series_of(family.type, family.name):
            exported[sample] |= set(extra)
        for s in family.samples:
            exported[s.name] |= set(s.labels)
    return exported


def mismatches(found: dict[str, str], exported: dict[str, set[str]]) -> list[str]:
    """Every metric or label a query uses that ``exported`` (plus the scrape's) lacks."""
    known = {name: labels | TARGET_LABELS for name, labels in exported.items()} | SCRAPE
    problems: list[str] = []
    for where, expr in found.items():
        parsed, label = used(where, expr)
        assert parsed.selectors, f"{where}: no metric in {expr!r}"
        for sel in parsed.selectors:
            if sel.metric not in known:
                problems.append(f"{where}: metric {sel.metric} is not exported by the relay")
                continue
            for name in sorted(sel.labels - known[sel.metric]):
                problems.append(f"{where}: {sel.metric} has no label {name!r}")
        for grouping in parsed.groupings:
            for sel in grouping.selectors:
                for name in grouping.labels:
                    if sel.metric in known and name not in known[sel.metric]:
                        problems.append(
                            f"{where}: {grouping.clause} ({name}) but {sel.metric} has no "
                            f"label {name!r}"
                        )
        if label is not None:
            for sel in parsed.selectors:
                if sel.metric in known and label not in known[sel.metric]:
                    problems.append(f"{where}: label_values: {sel.metric} has no {label!r}")
    return problems


# -- the checks -------------------------------------------------------------------------


def test_every_shipped_query_is_valid_promql(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is missing: .ci/test installs Debian's 'prometheus'"
    found = queries() | documented_alerts()
    rules = [
        {"record": f"check:query_{n}", "expr": for_promtool(used(where, expr)[0].text)}
        for n, (where, expr) in enumerate(found.items())
    ]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "shipped", "rules": rules}]}))
    check = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(rules)} rules found" in check.stdout


def test_the_reader_finds_metrics_labels_and_groupings() -> None:
    parsed = promql.read(
        'histogram_quantile(0.95, sum by (le, sink) (rate(a_bucket{namespace="$ns"}'
        "[$__rate_interval]))) / on (sink) group_left sum(b offset 5m) without (pod)"
        ' or max(c{__name__!="x", state=~"a|b"}) by (tenant) == bool 1'
    )
    assert [(s.metric, sorted(s.labels)) for s in parsed.selectors] == [
        ("a_bucket", ["namespace"]), ("b", []), ("c", ["__name__", "state"])
    ]  # fmt: skip
    assert {(g.clause, g.labels) for g in parsed.groupings} == {
        ("by", ("le", "sink")), ("on", ("sink",)), ("without", ("pod",)), ("by", ("tenant",))
    }  # fmt: skip
    with pytest.raises(ValueError, match="unbalanced"):
        promql.read("sum(rate(a[5m])")


def test_a_renamed_metric_or_label_is_named() -> None:
    exported = defined()
    found = queries()
    assert mismatches(found, exported) == []
    assert mismatches(documented_alerts(), exported) == []
    renamed = {
        where: expr.replace("exmail_relay_sink_backlog", "exmail_relay_sink_pending")
        for where, expr in found.items()
    }
    problems = mismatches(renamed, exported)
    assert problems and all("exmail_relay_sink_pending is not exported" in p for p in problems)
    relabelled = {"panel": "sum by (endpoint_name) (rate(exmail_relay_deliveries_total[5m]))"}
    assert mismatches(relabelled, exported) == [
        "panel: by (endpoint_name) but exmail_relay_deliveries_total has no label 'endpoint_name'"
    ]


def test_legends_name_labels_the_query_keeps() -> None:
    exported = defined()
    problems = []
    for where, (expr, legend) in legends().items():
        parsed = promql.read(expr)
        by = [g for g in parsed.groupings if g.clause == "by"]
        # the outermost aggregation closes last: its labels are what the series keep
        kept = (
            set(by[-1].labels)
            if by
            else set().union(
                *(exported.get(s.metric, set()) | TARGET_LABELS for s in parsed.selectors)
            )
        )
        for name in re.findall(r"\{\{\s*(\w+)\s*\}\}", legend):
            if name not in kept:
                problems.append(f"{where}: legend {{{{{name}}}}} is not a label of {expr!r}")
    assert not problems, "\n".join(problems)


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator(port=0, hold=0.5) as emu:
        yield emu


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A lease prefix (and sink exchange/queue name) of this test's own, deleted after."""
    name = f"test.dash.{uuid.uuid4().hex[:10]}"
    yield name
    await delete_lease_names(name, shards=4)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[bytes]]]:
    bodies: list[bytes] = []

    async def accept(request: web.Request) -> web.Response:
        bodies.append(await request.read())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", accept)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/hook", bodies
    await runner.cleanup()


@pytest.mark.rabbitmq
async def test_dashboard_and_alerts_use_what_a_running_relay_exports(
    tmp_path: Path, emulator: Emulator, prefix: str, receiver: tuple[str, list[bytes]]
) -> None:
    hook_url, bodies = receiver
    s = settings(
        tmp_path,
        tenants=[tenant(emulator)],
        amqp={"enabled": True, "url": AMQP_URL, "exchange": prefix, "queue": prefix},
        sharding={
            "replica_id": "dash-0",
            "prefix": prefix,
            "shards": 4,
            "heartbeat": 1,
            "secret": SECRET,
        },
        webhooks=[{"name": "dash", "url": hook_url, "secret": WHSEC, "types": ["exmail.*"]}],
    )
    # A registry of this relay's own (earlier tests' samples would answer the waits below),
    # with the collectors prometheus-client puts on the process-wide one the service uses.
    registry = CollectorRegistry()
    for collector in (ProcessCollector, PlatformCollector, GCCollector):
        collector(registry=registry)
    observer = PrometheusObserver(Metrics(registry))
    async with aiohttp.ClientSession() as http, running_relay(s, observer=observer) as running:
        url = running.server.url if running.server else ""
        control = Control(http, emulator)

        async def metrics() -> str:
            async with http.get(url + "metrics") as resp:
                assert resp.status == 200
                return await resp.text()

        async def owns_shards() -> bool:
            text = await metrics()
            return bool(re.search(r"^exmail_relay_owned_shards [1-9]", text, re.MULTILINE))

        async def delivered_to_both() -> str:
            text = await metrics()
            sinks = {
                s.labels["sink"]
                for f in text_string_to_metric_families(text)
                if f.name == "exmail_relay_deliveries"
                for s in f.samples
                if s.name.endswith("_total") and s.value >= 1
            }
            return text if {"amqp", "webhook:dash"} <= sinks else ""

        await eventually(owns_shards, seconds=30, what="the replica to hold its shards")
        await control.mail((await control.aliases())[0])
        text = await eventually(delivered_to_both, seconds=30, what="delivery to both sinks")
    assert bodies
    exported = scraped(text)
    definitions = defined()
    missing = sorted(n for n in set(definitions) - set(exported) if not n.endswith("_created"))
    assert not missing, f"defined but not on /metrics: {missing}"
    # Lease mode ran: its families carry samples, not only their HELP lines.
    assert "reason" in exported["exmail_relay_broker_messages_refused_total"]
    assert re.search(r"^exmail_relay_checkpoint_store_up 1", text, re.MULTILINE)
    for name, labels in definitions.items():
        exported[name] |= labels  # labelled families with no child yet
    problems = mismatches(queries() | documented_alerts(), exported)
    assert not problems, "\n".join(problems)
