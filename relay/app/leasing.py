"""Lease mode's parts, built from the settings: the lease manager, the checkpoint store
and the token fence of each tenant (docs/leases.md, "In the running relay")."""

from __future__ import annotations

from collections.abc import Callable

from relay.app.settings import Settings
from relay.core.shards import shard_of
from relay.runtime.checkpoints import CheckpointStore
from relay.runtime.leases import LeaseManager
from relay.runtime.observer import Observer
from relay.sinks.brokerlink import BrokerLink

__all__ = ["checkpoint_store", "lease_manager", "report_blocks", "token_fence"]


def report_blocks(link: BrokerLink, name: str, observer: Observer) -> None:
    """``exmail_relay_broker_blocked{link=name}``: 0 now, 1 while a resource alarm of
    RabbitMQ blocks ``link`` (the sink's too, in either mode)."""
    observer.broker_blocked(name, False)
    link.block_callbacks.append(lambda reason: observer.broker_blocked(name, reason is not None))


def lease_manager(settings: Settings, hostname: str | None, observer: Observer) -> LeaseManager:
    """Lease mode's manager: its own plain connection to ``[amqp] url`` (not the
    sink's: a lease must die with exactly the connection that holds it)."""
    sh = settings.sharding
    leases = LeaseManager(
        url=settings.amqp.url,
        replica_id=sh.lease_replica_id(hostname),
        secrets=sh.secret,
        tenants=[t.name for t in settings.tenants if t.enabled],
        shards=sh.shards,
        prefix=sh.prefix,
        heartbeat=sh.heartbeat,
        tick=min(1.0, sh.heartbeat / 3),
        on_refused=lambda reason: observer.broker_message_refused("presence", reason),
    )
    report_blocks(leases.link, "leases", observer)
    return leases


def checkpoint_store(
    settings: Settings, leases: LeaseManager, observer: Observer
) -> CheckpointStore:
    """Lease mode's checkpoint store on ``[amqp] url``, signed with the deployment secret."""
    sh = settings.sharding
    store = CheckpointStore(
        url=settings.amqp.url,
        secrets=sh.secret,
        shards=leases.shards,
        prefix=sh.prefix,
        heartbeat=sh.heartbeat,
        observer=observer,
    )
    report_blocks(store.link, "checkpoints", observer)
    return store


def token_fence(leases: LeaseManager, tenant: str) -> Callable[[], bool]:
    """The token fence: renew a refused token only while holding the tenant's shard."""
    shard = shard_of(tenant, leases.shards)
    return lambda: leases.holds(shard)
