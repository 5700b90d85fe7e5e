"""The Helm chart, linted and rendered by Helm's own Go engine (helm-python-sdk, no binary).

Every rendered manifest is validated against the Kubernetes OpenAPI schemas
(kubernetes-validate); the two CRD kinds (ServiceMonitor, PrometheusRule) are checked
structurally. The rendered ``relay.toml`` is loaded with the real configuration model.
"""

from __future__ import annotations

import base64
import copy
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from relay.app.loader import load_settings
from relay.app.settings import parse_duration

CHART = Path(__file__).resolve().parents[2] / "helm" / "exmail-relay"
KUBE_VERSION = "1.30.0"
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
WHSEC = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()

TENANTS = [
    {"name": "acme", "client_id": "admin@acme.example", "client_secret": "acme-key"},
    {"name": "globex", "client_id": "admin@globex.example", "client_secret": "globex-key"},
    {"name": "initech", "client_id": "admin@initech.example", "client_secret": "initech-key",
     "directory_bootstrap": "snapshot", "hold": "25s"},
]  # fmt: skip

FULL: dict[str, Any] = {
    "sharding": {"mode": "static", "count": 3},
    "tenants": TENANTS,
    "webhooks": [
        {
            "name": "oa",
            "url": "https://oa.example.com/hook",
            "secret": WHSEC,
            "types": ["exmail.mail.*"],
            "tenants": ["acme"],
        },
    ],
    "amqp": {"enabled": True, "url": "amqp://relay:pw@rabbitmq.mq:5672/"},
    "serviceMonitor": {"enabled": True, "force": True},
    "prometheusRule": {"enabled": True, "force": True},
    "dashboard": {"enabled": True},
    "networkPolicy": {
        "enabled": True,
        "exmail": {"cidrs": ["203.0.113.0/24"], "ports": [443, 12211]},
        "rabbitmq": {"to": [{"namespaceSelector": {"matchLabels": {"name": "mq"}}}]},
        "webhooks": {"cidrs": ["198.51.100.7/32"], "ports": [443]},
    },
}


@pytest.fixture(scope="module")
def chart() -> Any:
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def render(chart: Any, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    manifests = chart.render(values or {}, name="relay", namespace="mail", is_install=True)
    objects: list[dict[str, Any]] = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        objects += [doc for doc in yaml.safe_load_all(text) if doc]
    return objects


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"{kind}: {len(found)} objects"
    return found[0]


def relay_toml(objects: list[dict[str, Any]]) -> str:
    maps = [o for o in objects if o["kind"] == "ConfigMap" and "relay.toml" in o["data"]]
    assert len(maps) == 1
    return str(maps[0]["data"]["relay.toml"])


def kinds(objects: list[dict[str, Any]]) -> set[str]:
    return {o["kind"] for o in objects}


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    pod = one(objects, "StatefulSet")["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1
    return pod["containers"][0]


def env_of(objects: list[dict[str, Any]]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container(objects)["env"]}


# -- lint and schema validation ---------------------------------------------------------


@pytest.mark.parametrize("values", [{}, FULL], ids=["default", "sharded-monitored"])
def test_helm_lint_finds_no_warnings_or_errors(values: dict[str, Any]) -> None:
    report = helm.lint(CHART, values, strict=True, kube_version=f"v{KUBE_VERSION}")
    assert report["errors"] == []
    serious = [m for m in report["messages"] if m["severity"] >= 2]
    assert serious == []


@pytest.mark.parametrize("values", [{}, FULL], ids=["default", "sharded-monitored"])
def test_every_manifest_is_valid_kubernetes(chart: Any, values: dict[str, Any]) -> None:
    objects = render(chart, values)
    assert objects
    for obj in objects:
        if obj["kind"] in CRD_KINDS:
            continue
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def test_the_validator_rejects_a_broken_manifest(chart: Any) -> None:
    statefulset = copy.deepcopy(one(render(chart), "StatefulSet"))
    statefulset["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, KUBE_VERSION, strict=True)


def test_crd_kinds_are_structurally_sound(chart: Any) -> None:
    objects = render(chart, FULL)
    monitor = one(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    services = [o for o in objects if o["kind"] == "Service"]
    component = "app.kubernetes.io/component"
    service = next(o for o in services if o["metadata"]["labels"].get(component) == "http")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"] == [
        {"port": "http", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
    ]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["mail"]}

    rule = one(objects, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    rules = rule["spec"]["groups"][0]["rules"]
    names = {r["alert"] for r in rules}
    assert names == {
        "ExmailRelayDown", "ExmailRelayTenantFailed", "ExmailRelayListenerDown",
        "ExmailRelayNotReady", "ExmailRelayBacklogGrowing", "ExmailRelayOldestPendingHigh",
        "ExmailRelayDeadLetters", "ExmailRelayBrokerMessagesRefused",
        "ExmailRelayLeaseUnhealthy", "ExmailRelayCheckpointsWaiting",
        "ExmailRelayCallbacksRefused", "ExmailRelayDirectoryPollsFailing",
        "ExmailRelayDirectoryDeletionsHeld", "ExmailRelayBrokerBlocked",
    }  # fmt: skip
    for item in rules:
        assert set(item) <= {"alert", "expr", "for", "labels", "annotations"}
        assert item["labels"]["severity"] in {"warning", "critical"}
        assert item["expr"].count("(") == item["expr"].count(")")
        assert "summary" in item["annotations"]
        assert "{{ $labels" in item["annotations"]["summary"]


def test_the_rules_extra_labels_are_labels_and_nothing_else(chart: Any) -> None:
    values = copy.deepcopy(FULL)
    values.setdefault("prometheusRule", {})["labels"] = {"release": "kube-prometheus"}
    rule = one(render(chart, values), "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus"
    assert all(isinstance(v, str) for v in rule["metadata"]["labels"].values())
    names = [r["alert"] for r in rule["spec"]["groups"][0]["rules"]]
    assert len(names) == len(set(names)), "no alert twice"


# test_ship_dashboard.py checks every query's metrics and labels against a running relay.


# -- the workload -----------------------------------------------------------------------


def test_default_render_is_one_replica_with_the_expected_objects(chart: Any) -> None:
    objects = render(chart)
    assert kinds(objects) == {
        "ConfigMap", "Secret", "Service", "ServiceAccount", "StatefulSet", "PodDisruptionBudget",
    }  # fmt: skip
    statefulset = one(objects, "StatefulSet")
    assert statefulset["spec"]["replicas"] == 1
    assert statefulset["spec"]["podManagementPolicy"] == "Parallel"


@pytest.mark.parametrize("count", [1, 3, 5])
def test_replicas_equal_the_shard_count(chart: Any, count: int) -> None:
    objects = render(chart, {"sharding": {"count": count}})
    assert one(objects, "StatefulSet")["spec"]["replicas"] == count
    env = env_of(objects)
    assert env["RELAY_SHARDING__COUNT"] == str(count)
    assert "RELAY_SHARDING__INDEX" not in env  # the ordinal in the host name gives it


def test_lease_mode_is_the_default_with_amqp_two_replicas_one_disruption(
    chart: Any, tmp_path: Path
) -> None:
    amqp = {"enabled": True, "url": "amqp://relay:pw@rabbitmq.mq:5672/"}
    objects = render(chart, {"amqp": amqp, "tenants": TENANTS})
    assert one(objects, "StatefulSet")["spec"]["replicas"] == 2
    assert one(objects, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    assert "RELAY_SHARDING__COUNT" not in env_of(objects)
    data = {k: base64.b64decode(v).decode() for k, v in one(objects, "Secret")["data"].items()}
    settings = load_settings(_write_pod_files(objects, tmp_path, data), environ={})
    assert settings.sharding_mode == "lease"
    assert settings.sharding.shards == 16 and settings.sharding.heartbeat == 5
    assert settings.sharding.release_after == 30.0  # an unhealthy pod lets go after 30 s
    # Every pod runs every tenant whose shard it holds: no ordinal picks them.
    assert len(settings.shard_tenants("relay-exmail-relay-1")) == len(TENANTS)
    # The gateway forwards to the lease holder by its replica id: the pod's name.
    assert settings.gateway.peer_url == (
        "http://{replica}.relay-exmail-relay-headless.mail.svc:8080"
    )
    # One deployment, one shard space: the prefix is the release's own, and the
    # deployment secret is generated into the chart's Secret (mounted as secret_file).
    assert settings.sharding.prefix == "exmail.relay.relay"
    (secret,) = settings.sharding.secret
    assert len(secret.get_secret_value()) == 48
    assert data["sharding-secret"] == secret.get_secret_value()
    assert secret.get_secret_value() not in relay_toml(objects)
    other = render(chart, {"amqp": amqp, "tenants": TENANTS})
    other_secret = base64.b64decode(one(other, "Secret")["data"]["sharding-secret"]).decode()
    assert other_secret != secret.get_secret_value(), "random per install (kept by lookup)"
    given = render(
        chart,
        {"amqp": amqp, "sharding": {"secret": "given-secret-0123456789", "prefix": "acme.mail"}},
    )
    assert 'prefix = "acme.mail"' in relay_toml(given)
    given_data = one(given, "Secret")["data"]
    assert base64.b64decode(given_data["sharding-secret"]) == b"given-secret-0123456789"
    mounted = render(chart, {"amqp": amqp, "secrets": {"existingSecret": "mine"}})
    assert "Secret" not in kinds(mounted)
    assert 'secret_file = "/var/run/secrets/exmail-relay/sharding-secret"' in relay_toml(mounted)

    scaled = render(chart, {"amqp": amqp, "replicas": 3, "sharding": {"shards": 32}})
    assert one(scaled, "StatefulSet")["spec"]["replicas"] == 3
    assert "shards = 32" in relay_toml(scaled)
    quick = render(chart, {"amqp": amqp, "sharding": {"releaseAfter": "10s"}})
    assert 'release_after = "10s"' in relay_toml(quick)


def test_amqp_content_mode_renders_and_loads(chart: Any, tmp_path: Path) -> None:
    default = render(chart)
    assert 'content_mode = "structured"' in relay_toml(default)
    assert 'header_prefix = "cloudEvents_"' in relay_toml(default)
    settings = {"content_mode": "binary", "header_prefix": "cloudEvents:"}
    amqp = {"enabled": True, "url": "amqp://relay:pw@rabbitmq.mq:5672/", "settings": settings}
    objects = render(chart, {"amqp": amqp, "tenants": TENANTS})
    data = {k: base64.b64decode(v).decode() for k, v in one(objects, "Secret")["data"].items()}
    loaded = load_settings(_write_pod_files(objects, tmp_path, data), environ={})
    assert loaded.amqp.content_mode == "binary"
    assert loaded.amqp.header_prefix == "cloudEvents:"
    with pytest.raises(Exception, match="content_mode"):
        render(chart, {"amqp": {"settings": {"content_mode": "binary-ish"}}})


def test_lease_mode_without_amqp_does_not_render(chart: Any) -> None:
    with pytest.raises(Exception, match=r"sharding\.mode lease needs amqp\.enabled"):
        render(chart, {"sharding": {"mode": "lease"}})


def test_services_headless_and_http(chart: Any) -> None:
    objects = render(chart)
    statefulset = one(objects, "StatefulSet")
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    headless = services[statefulset["spec"]["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert len(services) == 2
    assert statefulset["spec"]["volumeClaimTemplates"][0]["spec"]["resources"] == {
        "requests": {"storage": "2Gi"}
    }


def test_probes(chart: Any) -> None:
    main = container(render(chart))
    assert main["startupProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert main["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    startup = main["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30
    assert main["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]


def test_security_context_and_writable_paths(chart: Any) -> None:
    objects = render(chart)
    pod = one(objects, "StatefulSet")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["fsGroup"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    main = pod["containers"][0]
    assert main["securityContext"] == {
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    mounts = {m["mountPath"]: m for m in main["volumeMounts"]}
    writable = {path for path, m in mounts.items() if not m.get("readOnly")}
    tmp = "/tmp"  # noqa: S108 -- the pod's own emptyDir, not a host temp file
    assert writable == {"/var/lib/exmail-relay", tmp}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts[tmp]["name"]]
    assert mounts["/var/lib/exmail-relay"]["name"] == "journal"


def test_shutdown_timeout_is_below_the_grace_period(chart: Any) -> None:
    objects = render(chart)
    pod = one(objects, "StatefulSet")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 30
    toml = relay_toml(objects)
    match = re.search(r'^timeout = "([^"]+)"$', toml, re.MULTILINE)
    assert match is not None
    assert parse_duration(match.group(1)) < pod["terminationGracePeriodSeconds"]


def test_environment_matches_the_image(chart: Any) -> None:
    env = env_of(render(chart))
    assert env["RELAY_CONFIG"] == "/etc/exmail-relay/relay.toml"
    assert env["RELAY_JOURNAL__PATH"] == "/var/lib/exmail-relay/journal.sqlite3"
    assert env["RELAY_HTTP__HOST"] == "0.0.0.0"  # noqa: S104 -- pods listen on their IP


# -- configuration and secrets ----------------------------------------------------------


def _annotations(objects: list[dict[str, Any]]) -> dict[str, str]:
    annotations: dict[str, str] = one(objects, "StatefulSet")["spec"]["template"]["metadata"][
        "annotations"
    ]
    return annotations


def test_checksums_roll_the_pods_on_config_and_secret_changes(chart: Any) -> None:
    base = _annotations(render(chart, FULL))
    same = _annotations(render(chart, copy.deepcopy(FULL)))
    assert base == same

    logged = copy.deepcopy(FULL)
    logged["config"] = {"log": {"level": "debug"}}
    changed = _annotations(render(chart, logged))
    assert changed["checksum/config"] != base["checksum/config"]
    assert changed["checksum/secret"] == base["checksum/secret"]

    rotated = copy.deepcopy(FULL)
    rotated["tenants"][0]["client_secret"] = "new-acme-key"
    changed = _annotations(render(chart, rotated))
    assert changed["checksum/secret"] != base["checksum/secret"]
    assert changed["checksum/config"] == base["checksum/config"]


def _write_pod_files(
    objects: list[dict[str, Any]], tmp_path: Path, secret_data: dict[str, str]
) -> Path:
    """Lay out the ConfigMap and the Secret as the pod sees them, under tmp_path."""
    secret_dir = tmp_path / "secrets"
    secret_dir.mkdir()
    for key, value in secret_data.items():
        (secret_dir / key).write_text(value)
    toml = relay_toml(objects)
    toml = toml.replace("/var/run/secrets/exmail-relay", str(secret_dir))
    config = tmp_path / "relay.toml"
    config.write_text(toml)
    return config


def test_rendered_relay_toml_loads_with_the_config_model(chart: Any, tmp_path: Path) -> None:
    objects = render(chart, FULL)
    secret = one(objects, "Secret")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert set(data) == {
        "tenant-acme-client-secret", "tenant-globex-client-secret",
        "tenant-initech-client-secret", "webhook-oa-secret", "amqp-url",
    }  # fmt: skip
    toml = relay_toml(objects)
    for value in data.values():
        assert value not in toml  # secrets never reach the ConfigMap
    settings = load_settings(_write_pod_files(objects, tmp_path, data), environ={})
    assert [t.name for t in settings.tenants] == ["acme", "globex", "initech"]
    assert settings.tenants[0].secret().get_secret_value() == "acme-key"
    assert settings.tenants[2].directory_bootstrap == "snapshot"
    assert settings.tenants[2].hold == 25.0
    assert settings.amqp.enabled is True
    assert settings.amqp.url.get_secret_value() == "amqp://relay:pw@rabbitmq.mq:5672/"
    assert settings.webhooks[0].secret[0].get_secret_value() == WHSEC
    assert settings.webhooks[0].types == ["exmail.mail.*"]
    assert settings.sharding.count == 3
    assert settings.shutdown.timeout == 20.0
    assert settings.log.format == "json"
    owners = {t.name for i in range(3) for t in settings.shard_tenants(f"relay-exmail-relay-{i}")}
    assert owners == {"acme", "globex", "initech"}
    # The gateway forwards to the owning pod by its StatefulSet DNS name.
    assert settings.gateway.peer_url == (
        "http://relay-exmail-relay-{index}.relay-exmail-relay-headless.mail.svc:8080"
    )


def test_peer_url_is_the_users_when_given(chart: Any, tmp_path: Path) -> None:
    mine = "http://relay-{index}.example:9000"
    objects = render(chart, {"sharding": {"count": 2}, "config": {"gateway": {"peer_url": mine}}})
    settings = load_settings(_write_pod_files(objects, tmp_path, {}), environ={})
    assert settings.gateway.peer_url == mine


def test_default_relay_toml_loads(chart: Any, tmp_path: Path) -> None:
    objects = render(chart)
    settings = load_settings(_write_pod_files(objects, tmp_path, {}), environ={})
    assert settings.tenants == []
    assert settings.amqp.enabled is False
    assert settings.http.port == 8080
    assert settings.gateway.peer_url is None  # one replica: nothing to forward to


def test_the_admin_api_token_goes_through_the_secret(chart: Any, tmp_path: Path) -> None:
    token = "admin-token-from-the-chart-0001"
    objects = render(chart, {"adminApi": {"enabled": True, "token": token}})
    data = {k: base64.b64decode(v).decode() for k, v in one(objects, "Secret")["data"].items()}
    assert data["admin-token"] == token
    assert token not in relay_toml(objects)
    settings = load_settings(_write_pod_files(objects, tmp_path, data), environ={})
    assert settings.http.admin_token is not None
    assert settings.http.admin_token.get_secret_value() == token
    assert settings.http.port == 8080  # the rest of [http] as the values give it
    with pytest.raises(helm.HelmError, match=r"adminApi\.token is required"):
        render(chart, {"adminApi": {"enabled": True}})
    off = render(chart)
    assert "admin_token" not in relay_toml(off)


def test_a_token_rotation_file_goes_through_the_secret_unchanged(
    chart: Any, tmp_path: Path
) -> None:
    # adminApi.token as a YAML block: several tokens, the first one sent to peers.
    new, old = "admin-token-new-000000000001", "admin-token-old-000000000001"
    tokens = f"# rotation, step 2\nci-2026 {new}\n{old}\n"
    objects = render(chart, {"adminApi": {"enabled": True, "token": tokens}})
    data = {k: base64.b64decode(v).decode() for k, v in one(objects, "Secret")["data"].items()}
    assert data["admin-token"] == tokens
    settings = load_settings(_write_pod_files(objects, tmp_path, data), environ={})
    admin = settings.http.tokens("admin_token")
    assert admin is not None and admin.values() == (new, old) and admin.first.name == "ci-2026"
    # Mounted as a directory, not with subPath: the kubelet swaps a changed Secret in
    # place, and the relay reads the file again (an existing Secret rotates live).
    mounts = [m for m in container(objects)["volumeMounts"] if m["name"] == "secrets"]
    assert len(mounts) == 1 and "subPath" not in mounts[0]


def test_existing_secret_replaces_the_charts_secret(chart: Any) -> None:
    values = copy.deepcopy(FULL)
    values["secrets"] = {"existingSecret": "relay-credentials"}
    for tenant in values["tenants"]:
        del tenant["client_secret"]
    del values["webhooks"][0]["secret"]
    values["amqp"]["url"] = ""
    objects = render(chart, values)
    assert "Secret" not in kinds(objects)
    pod = one(objects, "StatefulSet")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["secrets"]["secret"]["secretName"] == "relay-credentials"


def test_a_missing_secret_without_existing_secret_fails_clearly(chart: Any) -> None:
    values = {"tenants": [{"name": "acme", "client_id": "admin@acme.example"}]}
    with pytest.raises(helm.HelmError, match="acme needs client_secret"):
        render(chart, values)


# -- conditional objects ----------------------------------------------------------------


def test_service_monitor_needs_the_api_or_force(chart: Any) -> None:
    # An offline render advertises no monitoring.coreos.com/v1, so enabled alone renders none.
    assert "ServiceMonitor" not in kinds(render(chart, {"serviceMonitor": {"enabled": True}}))
    assert "PrometheusRule" not in kinds(render(chart, {"prometheusRule": {"enabled": True}}))
    forced = {"serviceMonitor": {"enabled": True, "force": True}}
    assert "ServiceMonitor" in kinds(render(chart, forced))
    off = {"serviceMonitor": {"enabled": False, "force": True}}
    assert "ServiceMonitor" not in kinds(render(chart, off))


def test_dashboard_configmap_is_labelled_for_the_grafana_sidecar(chart: Any) -> None:
    objects = render(chart, FULL)
    maps = [o for o in objects if o["kind"] == "ConfigMap"]
    dashboards = [m for m in maps if m["metadata"]["labels"].get("grafana_dashboard") == "1"]
    assert len(dashboards) == 1
    dashboard = yaml.safe_load(dashboards[0]["data"]["exmail-relay.json"])
    assert dashboard["uid"] == "exmail-relay"
    assert len(dashboard["panels"]) >= 8


def test_network_policy(chart: Any) -> None:
    objects = render(chart, FULL)
    policy = one(objects, "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["ingress"][0]["ports"] == [{"port": "http", "protocol": "TCP"}]
    pods = {"matchLabels": {"app.kubernetes.io/name": "exmail-relay",
                            "app.kubernetes.io/instance": "relay"}}  # fmt: skip
    assert policy["ingress"][0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}},
        {"podSelector": pods},  # the other replicas forward gateway calls
    ]
    egress = policy["egress"]
    assert {p["port"] for p in egress[0]["ports"]} == {53}
    assert egress[1]["to"] == [{"ipBlock": {"cidr": "203.0.113.0/24"}}]
    assert {p["port"] for p in egress[1]["ports"]} == {443, 12211}
    assert egress[2]["to"] == [{"namespaceSelector": {"matchLabels": {"name": "mq"}}}]
    assert egress[3]["to"] == [{"ipBlock": {"cidr": "198.51.100.7/32"}}]
    assert egress[4] == {
        "to": [{"podSelector": pods}],
        "ports": [{"port": "http", "protocol": "TCP"}],
    }
    assert len(egress) == 5
    assert "NetworkPolicy" not in kinds(render(chart))


# -- the values schema ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"sharding": {"count": "three"}}, "/sharding/count"),
        ({"sharding": {"count": 0}}, "/sharding/count"),
        ({"sharding": {"mode": "raft"}}, "/sharding/mode"),
        ({"sharding": {"secret": "too-short"}}, "/sharding/secret"),
        ({"sharding": {"prefix": "has space"}}, "/sharding/prefix"),
        ({"replicas": 0}, "/replicas"),
        ({"tenants": [{"name": "Acme Corp", "client_id": "admin@x.example"}]}, "/tenants/0/name"),
        ({"tenants": [{"name": "acme"}]}, "client_id"),
        ({"config": {"journal": {"path": "/elsewhere"}}}, "/config/journal"),
        ({"config": {"sharding": {"count": 2}}}, "sharding"),
        ({"config": {"log": {"level": "loud"}}}, "/config/log/level"),
        ({"serviceMonitor": {"enabled": "yes"}}, "/serviceMonitor/enabled"),
        ({"persistence": {"size": 10}}, "/persistence/size"),
        ({"replicaCount": 3}, "replicaCount"),
        ({"adminApi": {"enabled": True, "token": "short"}}, "/adminApi/token"),
        ({"config": {"http": {"admin_token": "in-a-configmap-0001"}}}, "/config/http"),
    ],
)
def test_schema_rejects_invalid_values(chart: Any, values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmValuesError) as caught:
        render(chart, values)
    assert "schema" in str(caught.value)
    assert message in str(caught.value)


def test_config_check_accepts_the_rendered_config_and_masks_secrets(
    chart: Any, tmp_path: Path
) -> None:
    objects = render(chart, FULL)
    data = {k: base64.b64decode(v).decode() for k, v in one(objects, "Secret")["data"].items()}
    config = _write_pod_files(objects, tmp_path, data)
    result = subprocess.run(
        [sys.executable, "-m", "relay", "config", "check", "--config", str(config)],
        capture_output=True, text=True, timeout=60, check=False,
        # In the pod the host name (relay-exmail-relay-<n>) gives the index; here, the env.
        env={"PATH": os.environ.get("PATH", ""), "RELAY_SHARDING__INDEX": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "configuration OK" in result.stdout + result.stderr
    for secret in data.values():
        assert secret.strip() not in result.stdout + result.stderr


# -- API gateway clients ----------------------------------------------------------------

PORTAL_KEYS = ["portal-key-old-0123456789", "portal-key-new-9876543210"]
PORTAL_LINK = "portal-link-secret-abcdefgh"
HR_KEY = "hr-sync-key-0123456789abcdef"
CLIENTS: list[dict[str, Any]] = [
    {"name": "portal", "keys": PORTAL_KEYS, "tenants": ["acme", "globex"],
     "scopes": ["sso", "read"], "rate": 2.5, "burst": 5, "link_secret": PORTAL_LINK,
     "single_use": True},
    {"name": "hr-sync", "keys": [HR_KEY], "tenants": ["acme"], "scopes": ["read", "write"]},
]  # fmt: skip
GATEWAY: dict[str, Any] = {**FULL, "clients": CLIENTS}
CLIENT_SECRETS = [*PORTAL_KEYS, PORTAL_LINK, HR_KEY]


def _secret_data(objects: list[dict[str, Any]]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in one(objects, "Secret")["data"].items()}


def test_gateway_values_lint_and_render_valid_kubernetes(chart: Any) -> None:
    report = helm.lint(CHART, GATEWAY, strict=True, kube_version=f"v{KUBE_VERSION}")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []
    for obj in render(chart, GATEWAY):
        if obj["kind"] not in CRD_KINDS:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def test_clients_load_with_their_keys_and_link_secret_from_the_secret(
    chart: Any, tmp_path: Path
) -> None:
    objects = render(chart, GATEWAY)
    data = _secret_data(objects)
    assert data["client-portal-keys"] == "\n".join(PORTAL_KEYS)
    assert data["client-portal-link-secret"] == PORTAL_LINK
    assert data["client-hr-sync-keys"] == HR_KEY
    assert "client-hr-sync-link-secret" not in data  # no link_secret, no key
    settings = load_settings(_write_pod_files(objects, tmp_path, data), environ={})
    portal, hr_sync = settings.clients
    assert portal.name == "portal" and hr_sync.name == "hr-sync"
    assert [k.get_secret_value() for k in portal.key] == PORTAL_KEYS
    assert portal.link_secret is not None
    assert portal.link_secret.get_secret_value() == PORTAL_LINK
    assert portal.tenants == ["acme", "globex"]
    assert portal.scopes == ["sso", "read"]
    assert (portal.rate, portal.burst, portal.single_use) == (2.5, 5, True)
    assert [k.get_secret_value() for k in hr_sync.key] == [HR_KEY]
    assert hr_sync.link_secret is None
    assert hr_sync.scopes == ["read", "write"] and hr_sync.single_use is False
    assert (hr_sync.rate, hr_sync.burst) == (10.0, 20)  # the relay's defaults


def test_client_keys_and_link_secrets_are_only_in_the_secret(chart: Any) -> None:
    objects = render(chart, GATEWAY)
    encoded = [base64.b64encode(s.encode()).decode() for s in CLIENT_SECRETS]
    in_secret = "\n".join(_secret_data(objects).values())
    assert all(value in in_secret for value in CLIENT_SECRETS)
    others = [o for o in objects if o["kind"] != "Secret"]
    assert {"ConfigMap", "StatefulSet"} <= kinds(others)
    for obj in others:
        text = yaml.safe_dump(obj)
        for value in [*CLIENT_SECRETS, *encoded]:
            assert value not in text, f"{obj['kind']} {obj['metadata']['name']} holds a secret"


def test_existing_secret_mode_references_the_client_keys_by_name(
    chart: Any, tmp_path: Path
) -> None:
    values = copy.deepcopy(GATEWAY)
    values["secrets"] = {"existingSecret": "relay-credentials"}
    for tenant in values["tenants"]:
        del tenant["client_secret"]
    del values["webhooks"][0]["secret"]
    values["amqp"]["url"] = ""
    portal, hr_sync = values["clients"]
    del portal["keys"], portal["link_secret"], hr_sync["keys"]
    portal["signsLinks"] = True
    objects = render(chart, values)
    assert "Secret" not in kinds(objects)
    toml = relay_toml(objects)
    secret_dir = "/var/run/secrets/exmail-relay"
    assert f'key_file = "{secret_dir}/client-portal-keys"' in toml
    assert f'link_secret_file = "{secret_dir}/client-portal-link-secret"' in toml
    assert f'key_file = "{secret_dir}/client-hr-sync-keys"' in toml
    assert toml.count("link_secret_file") == 1
    assert "signsLinks" not in toml
    # The Secret an operator creates, with the key names the docs give.
    data = {
        "tenant-acme-client-secret": "a", "tenant-globex-client-secret": "g",
        "tenant-initech-client-secret": "i", "webhook-oa-secret": WHSEC,
        "amqp-url": "amqp://relay:pw@rabbitmq.mq:5672/",
        "client-portal-keys": "\n".join(PORTAL_KEYS) + "\n",
        "client-portal-link-secret": PORTAL_LINK + "\n",
        "client-hr-sync-keys": HR_KEY,
    }  # fmt: skip
    settings = load_settings(_write_pod_files(objects, tmp_path, data), environ={})
    assert [k.get_secret_value() for k in settings.clients[0].key] == PORTAL_KEYS
    link = settings.clients[0].link_secret
    assert link is not None and link.get_secret_value() == PORTAL_LINK
    assert settings.clients[1].link_secret is None


def test_a_client_key_change_rolls_the_pods(chart: Any) -> None:
    base = _annotations(render(chart, GATEWAY))
    rotated = copy.deepcopy(GATEWAY)
    rotated["clients"][1]["keys"] = [HR_KEY, "hr-sync-key-rotated-000000"]
    changed = _annotations(render(chart, rotated))
    assert changed["checksum/secret"] != base["checksum/secret"]
    assert changed["checksum/config"] == base["checksum/config"]

    relinked = copy.deepcopy(GATEWAY)
    relinked["clients"][0]["link_secret"] = "portal-link-secret-rotated"
    assert _annotations(render(chart, relinked))["checksum/secret"] != base["checksum/secret"]

    rescoped = copy.deepcopy(GATEWAY)
    rescoped["clients"][1]["scopes"] = ["read"]
    assert _annotations(render(chart, rescoped))["checksum/config"] != base["checksum/config"]


@pytest.mark.parametrize(
    ("client", "message"),
    [
        ({"name": "hr-sync", "scopes": ["read"]}, "hr-sync needs keys"),
        ({"name": "portal", "keys": [HR_KEY], "signsLinks": True},
         "portal has signsLinks but no link_secret"),
    ],
)  # fmt: skip
def test_a_client_missing_its_secrets_fails_clearly(
    chart: Any, client: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmError, match=message):
        render(chart, {"clients": [client]})


@pytest.mark.parametrize(
    ("client", "message"),
    [
        ({"name": "portal", "keys": [HR_KEY], "scopes": ["admin"]}, "/clients/0/scopes/0"),
        ({"name": "oa portal", "keys": [HR_KEY]}, "/clients/0/name"),
        ({"name": "portal", "keys": ["short"]}, "/clients/0/keys/0"),
        ({"name": "portal", "keys": []}, "/clients/0/keys"),
        ({"name": "portal", "keys": [HR_KEY], "link_secret": "short"}, "/clients/0/link_secret"),
        ({"name": "portal", "keys": [HR_KEY], "rate": 0}, "/clients/0/rate"),
        ({"name": "portal", "key": [HR_KEY]}, "additional properties 'key' not"),
        ({"name": "portal", "keys": [HR_KEY], "key_file": "/k"}, "properties 'key_file' not"),
        ({"keys": [HR_KEY]}, "missing property 'name'"),
    ],
)
def test_schema_rejects_invalid_clients(chart: Any, client: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmValuesError) as caught:
        render(chart, {"clients": [client]})
    assert "schema" in str(caught.value)
    assert message in str(caught.value)


def test_lease_mode_accepts_a_peer_url_naming_the_replica(chart: Any, tmp_path: Path) -> None:
    mine = "http://{replica}.relays.example:9000"
    amqp = {"enabled": True, "url": "amqp://relay:pw@rabbitmq.mq:5672/"}
    objects = render(chart, {"amqp": amqp, "config": {"gateway": {"peer_url": mine}}})
    data = _secret_data(objects)
    settings = load_settings(_write_pod_files(objects, tmp_path, data), environ={})
    assert settings.gateway.peer_url == mine
    with pytest.raises(helm.HelmValuesError, match="/config/gateway/peer_url"):
        render(chart, {"config": {"gateway": {"peer_url": "http://relay.example:9000"}}})


def test_network_policy_lets_lease_mode_replicas_forward_to_each_other(chart: Any) -> None:
    amqp = {"enabled": True, "url": "amqp://relay:pw@rabbitmq.mq:5672/"}
    objects = render(chart, {"amqp": amqp, "networkPolicy": {"enabled": True}})
    policy = one(objects, "NetworkPolicy")["spec"]
    pods = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "exmail-relay",
                                            "app.kubernetes.io/instance": "relay"}}}  # fmt: skip
    assert pods in policy["ingress"][0]["from"]
    assert {"to": [pods], "ports": [{"port": "http", "protocol": "TCP"}]} in policy["egress"]
    # One static replica has nobody to forward to.
    single = one(render(chart, {"networkPolicy": {"enabled": True}}), "NetworkPolicy")["spec"]
    assert pods not in single["ingress"][0]["from"]
    assert all(rule.get("to") != [pods] for rule in single["egress"])
