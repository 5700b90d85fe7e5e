"""One deployment, one shard space: deployments sharing a vhost leave each other alone.

On the real RabbitMQ. Presence is signed with the deployment's secret and carries the
fingerprint of its sharding configuration (shards, prefix, tenant set), so:

- two deployments with their own prefixes (the chart derives it from the release name)
  never see each other;
- two deployments left on one prefix (a raw configuration's default ``exmail.relay``)
  with their own secrets never count each other as members, and both fail readiness
  with "another deployment uses prefix ...", instead of splitting the shards silently
  (before: they split 16 shards 8/8, and each ran only half of its tenants);
- replicas with the same secret but another tenant set are never members of each
  other's share, say so at once (status), and fail readiness after the grace.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence

import aio_pika
import pytest
from pydantic import SecretStr

from relay.runtime.leases import LeaseManager
from tests.runtime.lease_support import wait_until
from tests.support import AMQP_URL

pytestmark = pytest.mark.rabbitmq

SECRET_A = "deployment-a-secret-0123456789"
SECRET_B = "deployment-b-secret-9876543210"


@contextlib.asynccontextmanager
async def prefixes(*names: str) -> AsyncIterator[None]:
    try:
        yield
    finally:
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel()
            for name in names:
                await channel.exchange_delete(f"{name}.presence")


def replica(
    prefix: str, name: str, secret: str, tenants: Sequence[str], **options: float
) -> LeaseManager:
    return LeaseManager(
        url=SecretStr(AMQP_URL),
        replica_id=name,
        secrets=[SecretStr(secret)],
        tenants=tenants,
        shards=16,
        prefix=prefix,
        heartbeat=2,
        tick=0.3,
        **options,  # type: ignore[arg-type]
    )


def covers(*managers: LeaseManager) -> bool:
    owned = [m.owned for m in managers]
    return sum(len(o) for o in owned) == 16 and set().union(*owned) == set(range(16))


async def test_deployments_with_their_own_prefixes_never_meet() -> None:
    pa, pb = (f"exmail.relay.test-{uuid.uuid4().hex[:10]}" for _ in range(2))
    a1, a2 = (replica(pa, f"a{i}", SECRET_A, ["acme", "globex"]) for i in (1, 2))
    b1, b2 = (replica(pb, f"b{i}", SECRET_B, ["initech"]) for i in (1, 2))
    async with prefixes(pa, pb), a1, a2, b1, b2:
        await wait_until(lambda: covers(a1, a2) and covers(b1, b2), 30, "both split 16 shards")
        assert a1.live == a2.live == {"a1", "a2"} and b1.live == b2.live == {"b1", "b2"}
        for m in (a1, a2, b1, b2):
            assert m.trouble() is None and m.conflicts() == [] and m.refused == {}


async def test_two_deployments_on_one_prefix_refuse_to_share_it_loudly() -> None:
    prefix = f"exmail.relay.test-{uuid.uuid4().hex[:10]}"
    a = replica(prefix, "relay-0", SECRET_A, ["acme", "globex"])
    b = replica(prefix, "relay-1", SECRET_B, ["initech"])
    async with prefixes(prefix), a, b:
        await wait_until(
            lambda: all(m.trouble() is not None for m in (a, b)), 30, "both to see the other"
        )
        for m in (a, b):
            trouble = m.trouble()
            assert trouble is not None
            assert f"another deployment uses prefix {prefix!r}" in trouble
            assert m.refused.get("bad signature", 0) >= 1
            assert m.last_error == trouble, "status shows it"
        # Never members of each other's share: each counts itself alone.
        assert a.live == {"relay-0"} and b.live == {"relay-1"}
        # Nor routed to: the other deployment's shards have no holder here.
        assert all(a.holder_of(s) is None for s in b.owned)
        assert all(b.holder_of(s) is None for s in a.owned)


async def test_a_replica_with_another_tenant_set_is_no_member_and_says_so() -> None:
    prefix = f"exmail.relay.test-{uuid.uuid4().hex[:10]}"
    # One secret (a copied configuration), two tenant sets: two shard spaces.
    a = replica(prefix, "relay-0", SECRET_A, ["acme", "globex"], mismatch_grace=2.0)
    b = replica(prefix, "relay-1", SECRET_A, ["acme"], mismatch_grace=2.0)
    async with prefixes(prefix), a, b:
        await wait_until(lambda: all(m.conflicts() for m in (a, b)), 30, "both to see it")
        for m in (a, b):
            (conflict,) = m.conflicts()
            assert "another sharding configuration" in conflict and "enabled tenants" in conflict
            assert m.refused == {}, "signed with our secret: read, not refused"
        assert a.live == {"relay-0"} and b.live == {"relay-1"}
        # Within the grace (a rolling change of the tenant set) readiness holds; past it,
        # it fails with the reason.
        await wait_until(
            lambda: all(m.trouble() is not None for m in (a, b)), 10, "readiness to fail"
        )
        assert "another sharding configuration" in (a.trouble() or "")
