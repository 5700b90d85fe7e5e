"""The chart's tracing values and extraEnv: rendered by Helm's engine, validated as
Kubernetes, and the pod environment they make, resolved as the kubelet would, read by
the relay's own tracing switch and by the OpenTelemetry SDK in the relay's exporter."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest

from relay.app.tracing import wanted_exporters
from tests.ship.test_ship_chart import CHART, CRD_KINDS, FULL, KUBE_VERSION, container, one, render

POD = {"metadata.name": "relay-exmail-relay-1", "metadata.namespace": "mail",
       "status.hostIP": "10.0.0.7"}  # fmt: skip
TRACED: dict[str, Any] = {
    "tracing": {
        "enabled": True,
        "endpoint": "http://otel-collector.observability:4318",
        "sampler": "parentbased_traceidratio",
        "samplerArg": 0.25,
        "resourceAttributes": {"deployment.environment": "production"},
    },
}


@pytest.fixture(scope="module")
def chart() -> Any:
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def env_list(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return list(container(objects)["env"])


def resolved_env(objects: list[dict[str, Any]]) -> dict[str, str]:
    """The container's environment as the kubelet builds it: downward-API fields filled
    in, and ``$(NAME)`` replaced by the value of a variable defined earlier."""
    env: dict[str, str] = {}
    for item in env_list(objects):
        if "valueFrom" in item:
            env[item["name"]] = POD[item["valueFrom"]["fieldRef"]["fieldPath"]]
            continue
        env[item["name"]] = re.sub(
            r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
            lambda m: env.get(m.group(1), m.group(0)),
            item.get("value", ""),
        )
    return env


def test_tracing_is_off_by_default_and_sets_no_otel_variable(chart: Any) -> None:
    env = resolved_env(render(chart))
    assert [name for name in env if not name.startswith("RELAY_")] == []
    assert wanted_exporters(env) == ()
    assert wanted_exporters(resolved_env(render(chart, TRACED))) == ("otlp",)


def test_tracing_values_render_the_standard_otel_variables(chart: Any) -> None:
    objects = render(chart, TRACED)
    items = env_list(objects)
    names = [item["name"] for item in items]
    assert names[:3] == ["RELAY_CONFIG", "RELAY_JOURNAL__PATH", "RELAY_HTTP__HOST"]
    fields = {i["name"]: i["valueFrom"]["fieldRef"]["fieldPath"] for i in items if "valueFrom" in i}
    assert fields == {
        "K8S_POD_NAME": "metadata.name",
        "K8S_NAMESPACE_NAME": "metadata.namespace",
        "K8S_NODE_IP": "status.hostIP",
    }
    # The downward-API variables come before the values that refer to them.
    assert names.index("K8S_POD_NAME") < names.index("OTEL_RESOURCE_ATTRIBUTES")
    env = resolved_env(objects)
    assert {k: v for k, v in env.items() if k.startswith("OTEL_")} == {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector.observability:4318",
        "OTEL_SERVICE_NAME": "relay-exmail-relay",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.25",
        "OTEL_RESOURCE_ATTRIBUTES": "k8s.pod.name=relay-exmail-relay-1,"
        "k8s.namespace.name=mail,k8s.statefulset.name=relay-exmail-relay,"
        "deployment.environment=production",
    }
    named = render(chart, {"tracing": {"enabled": True, "serviceName": "mail-relay"}})
    env = resolved_env(named)
    assert env["OTEL_SERVICE_NAME"] == "mail-relay"
    # No endpoint: the SDK's default (a collector in the pod); no sampler: the SDK's.
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env
    assert "OTEL_TRACES_SAMPLER" not in env and "OTEL_TRACES_SAMPLER_ARG" not in env
    node = render(chart, {"tracing": {"enabled": True, "endpoint": "http://$(K8S_NODE_IP):4318"}})
    assert resolved_env(node)["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://10.0.0.7:4318"


def test_the_install_notes_say_where_spans_go(chart: Any) -> None:
    def notes(values: dict[str, Any]) -> str:
        rendered = chart.render(values, name="relay", namespace="mail", is_install=True)
        return str(next(text for path, text in rendered.items() if path.endswith("NOTES.txt")))

    assert "Tracing:" not in notes({})
    assert "to http://otel-collector.observability:4318," in notes(TRACED)
    assert "as service relay-exmail-relay" in notes(TRACED)


def test_the_sdk_reads_the_rendered_environment(chart: Any) -> None:
    """The resolved pod environment, given to the relay's own exporter set-up in a fresh
    process: the SDK takes the service name, resource attributes and sampler from it."""
    env = {k: v for k, v in resolved_env(render(chart, TRACED)).items() if k.startswith("OTEL_")}
    code = (
        "import json; from relay.ops.tracing import OtelTracing;"
        "p = OtelTracing(['otlp'])._provider;"
        "print(json.dumps({'resource': {k: str(v) for k, v in p.resource.attributes.items()},"
        " 'sampler': p.sampler.get_description()})); p.shutdown()"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env={"PATH": os.environ.get("PATH", ""), **env},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    expected = {
        "service.name": "relay-exmail-relay",
        "k8s.pod.name": "relay-exmail-relay-1",
        "k8s.namespace.name": "mail",
        "k8s.statefulset.name": "relay-exmail-relay",
        "deployment.environment": "production",
    }
    assert expected.items() <= seen["resource"].items()
    assert "TraceIdRatioBased{0.25}" in seen["sampler"]
    assert seen["sampler"].startswith("ParentBased")


def test_extra_env_follows_the_charts_own_with_values_and_references(chart: Any) -> None:
    extra = [
        {"name": "OTEL_BSP_MAX_QUEUE_SIZE", "value": "4096"},
        {"name": "OTEL_EXPORTER_OTLP_HEADERS",
         "valueFrom": {"secretKeyRef": {"name": "otel-auth", "key": "headers"}}},
    ]  # fmt: skip
    items = env_list(render(chart, TRACED | {"extraEnv": extra}))
    assert items[-2:] == extra
    assert [i["name"] for i in items].count("OTEL_TRACES_EXPORTER") == 1
    # Without tracing, extraEnv alone can set the OTEL_ variables.
    alone = [{"name": "OTEL_TRACES_EXPORTER", "value": "console"}]
    env = resolved_env(render(chart, {"extraEnv": alone}))
    assert wanted_exporters(env) == ("console",)
    assert "K8S_POD_NAME" not in env


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (TRACED | {"extraEnv": [{"name": "OTEL_SERVICE_NAME", "value": "x"}]},
         "OTEL_SERVICE_NAME is set by the tracing values"),
        ({"extraEnv": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]},
         "A is given twice"),
    ],
)  # fmt: skip
def test_extra_env_never_sets_a_name_twice(
    chart: Any, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(Exception, match=message):
        render(chart, values)


def test_traced_release_lints_and_renders_valid_kubernetes(chart: Any) -> None:
    values = copy.deepcopy(FULL) | TRACED
    values["extraEnv"] = [
        {"name": "OTEL_BSP_SCHEDULE_DELAY", "value": "2000"},
        {"name": "OTEL_EXPORTER_OTLP_HEADERS",
         "valueFrom": {"secretKeyRef": {"name": "otel-auth", "key": "headers"}}},
    ]  # fmt: skip
    report = helm.lint(CHART, values, strict=True, kube_version=f"v{KUBE_VERSION}")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []
    objects = render(chart, values)
    for obj in objects:
        if obj["kind"] not in CRD_KINDS:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def test_network_policy_lets_traces_reach_the_collector(chart: Any) -> None:
    def collector_rules(values: dict[str, Any]) -> list[dict[str, Any]]:
        egress = one(render(chart, values), "NetworkPolicy")["spec"]["egress"]
        return [rule for rule in egress if {"port": 4318, "protocol": "TCP"} in rule["ports"]]

    policy = {"networkPolicy": {"enabled": True}}
    assert collector_rules(policy) == []
    assert collector_rules(policy | TRACED) == [{"ports": [{"port": 4318, "protocol": "TCP"}]}]
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "observability"}}}
    narrowed = {"networkPolicy": {"enabled": True, "collector": {"to": [peer]}}} | TRACED
    assert collector_rules(narrowed) == [
        {"ports": [{"port": 4318, "protocol": "TCP"}], "to": [peer]}
    ]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"extraEnv": [{"name": "RELAY_AMQP__URL", "value": "amqp://u:pw@mq/"}]}, "/extraEnv/0"),
        ({"extraEnv": [{"name": "RELAY_HTTP__ADMIN_TOKEN",
                        "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]},
         "/extraEnv/0"),
        ({"extraEnv": [{"name": "OTEL_EXPORTER_OTLP_HEADERS", "value": "authorization=Bearer x"}]},
         "/extraEnv/0"),
        ({"extraEnv": [{"name": "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "value": "api-key=x"}]},
         "/extraEnv/0"),
        ({"extraEnv": [{"name": "A", "value": "1", "valueFrom": {}}]}, "/extraEnv/0"),
        ({"extraEnv": [{"name": "A", "value": 1}]}, "/extraEnv/0/value"),
        ({"extraEnv": [{"name": "has space", "value": "1"}]}, "/extraEnv/0/name"),
        ({"extraEnv": [{"value": "1"}]}, "name"),
        ({"tracing": {"enabled": "yes"}}, "/tracing/enabled"),
        ({"tracing": {"endpoint": "otel-collector:4318"}}, "/tracing/endpoint"),
        ({"tracing": {"sampler": "sometimes"}}, "/tracing/sampler"),
        ({"tracing": {"samplerArg": 2}}, "/tracing/samplerArg"),
        ({"tracing": {"samplerArg": "half"}}, "/tracing/samplerArg"),
        ({"tracing": {"resourceAttributes": {"team": "a,b=c"}}}, "/tracing/resourceAttributes"),
        ({"tracing": {"headers": "x"}}, "headers"),
        ({"networkPolicy": {"collector": {"ports": [0]}}}, "/networkPolicy/collector/ports/0"),
    ],
)  # fmt: skip
def test_schema_rejects_invalid_tracing_values(
    chart: Any, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmValuesError) as caught:
        render(chart, values)
    assert "schema" in str(caught.value)
    assert message in str(caught.value)
