"""Sharding: every tenant has exactly one owner; the index comes from the pod ordinal."""

from __future__ import annotations

import pytest

from relay.app.settings import ConfigError, Settings
from relay.core.shards import shard_of


def _settings(count: int, index: int | None = None) -> Settings:
    tenants = [
        {"name": f"t{i}", "client_id": f"admin@t{i}.com", "client_secret": "k"} for i in range(50)
    ]
    return Settings(tenants=tenants, sharding={"count": count, "index": index})


def test_each_tenant_belongs_to_exactly_one_shard() -> None:
    owners: dict[str, int] = {}
    for index in range(4):
        for tenant in _settings(4, index).shard_tenants():
            assert tenant.name not in owners
            owners[tenant.name] = index
    assert len(owners) == 50
    assert len(set(owners.values())) == 4, "50 tenants spread over all 4 shards"
    assert all(shard_of(name, 4) == index for name, index in owners.items())


def test_index_defaults_to_the_statefulset_ordinal() -> None:
    settings = _settings(3)
    assert settings.sharding.resolved_index("exmail-relay-2") == 2
    assert [t.name for t in settings.shard_tenants("exmail-relay-2")] == [
        t.name for t in _settings(3, 2).shard_tenants()
    ]
    with pytest.raises(ConfigError, match="ends in no ordinal"):
        settings.sharding.resolved_index("relay")
    with pytest.raises(ConfigError, match=r"not below sharding\.count"):
        settings.sharding.resolved_index("exmail-relay-3")


def test_one_shard_serves_every_enabled_tenant() -> None:
    settings = Settings(
        tenants=[
            {"name": "a", "client_id": "admin@a.com", "client_secret": "k"},
            {"name": "b", "client_id": "admin@b.com", "client_secret": "k", "enabled": False},
        ]
    )
    assert [t.name for t in settings.shard_tenants("whatever")] == ["a"]


def test_adding_a_tenant_moves_no_other() -> None:
    before = {f"t{i}": shard_of(f"t{i}", 5) for i in range(50)}
    after = {f"t{i}": shard_of(f"t{i}", 5) for i in range(51)}
    assert all(after[name] == shard for name, shard in before.items())


SECRET = {"secret": "sharding-secret-0123456789"}


def _mode(**sections: object) -> str:
    sections.setdefault("sharding", {})
    sections["sharding"] = {**SECRET, **sections["sharding"]}  # type: ignore[dict-item]
    return Settings(**sections).sharding_mode  # type: ignore[arg-type]


def test_the_sharding_mode_defaults_to_lease_with_amqp_and_static_without() -> None:
    assert _mode() == "static"
    assert _mode(amqp={"enabled": True}) == "lease"
    assert _mode(amqp={"enabled": True}, sharding={"mode": "static"}) == "static"
    # A configuration from before leases (count or index set) keeps its meaning.
    assert _mode(amqp={"enabled": True}, sharding={"count": 3, "index": 1}) == "static"
    assert _mode(amqp={"enabled": True}, sharding={"count": 1}) == "static"


def test_lease_mode_needs_amqp() -> None:
    with pytest.raises(ValueError, match=r'sharding\.mode = "lease" needs \[amqp\] enabled'):
        Settings(sharding={"mode": "lease"})


def test_lease_mode_runs_every_enabled_tenant_and_defaults_the_replica_to_the_host() -> None:
    tenants = [
        {"name": f"t{i}", "client_id": f"admin@t{i}.com", "client_secret": "k"} for i in range(5)
    ]
    s = Settings(tenants=tenants, amqp={"enabled": True}, sharding=SECRET)
    assert [t.name for t in s.shard_tenants("exmail-relay-7")] == [f"t{i}" for i in range(5)]
    assert s.sharding.shards == 16 and s.sharding.heartbeat == 5
    assert s.sharding.prefix == "exmail.relay"
    assert s.sharding.resolved_replica_id("pod-abc") == "pod-abc"
    named = Settings(
        tenants=tenants, amqp={"enabled": True}, sharding={"replica_id": "r1", **SECRET}
    )
    assert named.sharding.resolved_replica_id("pod-abc") == "r1"
