"""Lease mode in the running relay: relays built by ``build_service`` in one process, with
different replica ids, on the real RabbitMQ and the real emulator (6 tenants).

The shards split between the relays; a graceful stop hands every shard over; a shard
handed over for balance stops its listeners before the other relay starts them (the
emulator never sees two open listens for one tenant); a standby is ready; a new owner
starts from the broker's checkpoint when it is newer than its journal's; the token
fence keeps a replica that lost a tenant from fetching its token again; and tenants let
go by the fence during a freshness lapse listen again while the shard stays held.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from relay.app.settings import Settings, TenantSettings
from relay.app.wiring import Running, build_service, client_for
from relay.core.backoff import Backoff
from relay.core.checkpoints import KIND, encode
from relay.core.envelope import HEADER, sign
from relay.core.routing import Router
from relay.emulator import Emulator
from relay.exmail import TokenFenced, UserAction, UserListEntry
from relay.exmail._token import TokenCache
from relay.journal import Journal
from relay.ops.metrics import Metrics, PrometheusObserver
from relay.runtime.checkpoints import CheckpointStore
from relay.runtime.enrich import Enricher
from relay.runtime.leases import LeaseManager
from relay.runtime.listener import Listener
from relay.runtime.ownership import ShardRunner
from tests.pipeline.support import control
from tests.support import (
    AMQP_URL,
    BROKER_ADDRESS,
    DEPLOYMENT_SECRET,
    TcpProxy,
    delete_lease_names,
    eventually,
)

TENANTS = [f"t{i}" for i in range(6)]
SHARDS = 16
KEY = "exmail-demo-key"


def admin(tenant: str) -> str:
    return f"admin@{tenant}.example.com"


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(port=0, hold=1.0) as e:
        companies = [
            {"admin": admin(t), "key": KEY, "domains": [f"{t}.example.com"]} for t in TENANTS
        ]
        await control(e, "company", {"companies": companies})
        yield e


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A lease prefix (and sink exchange/queue name) of this test's own."""
    name = f"test.lease.{uuid.uuid4().hex[:10]}"
    yield name
    await delete_lease_names(name)


def tenant_settings(emu: Emulator, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "client_id": admin(name),
        "client_secret": KEY,
        "api_url": emu.api_url,
        "token_url": emu.token_url,
        "login_url": emu.login_url,
        "hold": 1.0,
    }


def lease_settings(
    emu: Emulator, tmp_path: Path, replica: str, prefix: str, **sharding: Any
) -> Settings:
    # No [sharding] mode: with [amqp] enabled, lease is the default.
    return Settings(
        journal={"path": tmp_path / f"{replica}.sqlite3", "synchronous": "normal"},
        tenants=[tenant_settings(emu, t) for t in TENANTS],
        amqp={"enabled": True, "url": AMQP_URL, "exchange": prefix, "queue": prefix},
        sharding={
            "replica_id": replica,
            "prefix": prefix,
            "heartbeat": 2,
            "secret": DEPLOYMENT_SECRET,
            **sharding,
        },
        http={"enabled": False},
        shutdown={"timeout": 3},
    )


@contextlib.asynccontextmanager
async def relay(
    s: Settings, *, checkpoints: CheckpointStore | None = None
) -> AsyncIterator[tuple[Running, CollectorRegistry]]:
    """One relay with a registry of its own, running until the block ends (graceful)."""
    registry = CollectorRegistry()
    observer = PrometheusObserver(Metrics(registry))
    async with build_service(s, observer=observer, checkpoints=checkpoints) as running:
        stop = asyncio.Event()
        task = asyncio.create_task(running.service.run(stop))
        try:
            yield running, registry
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)


def runner_of(running: Running) -> ShardRunner:
    runner = running.service.runner
    assert runner is not None, "lease mode builds a shard runner"
    return runner


async def listening(emu: Emulator) -> dict[str, int]:
    """Open listens per tenant, as the emulator counts them."""
    state = await control(emu, "state", method="GET")
    by_admin = {c["admin"]: c["listening"] for c in state["companies"]}
    return {t: by_admin[admin(t)] for t in TENANTS}


async def token_fetches(emu: Emulator) -> int:
    state = await control(emu, "state", method="GET")
    return int(state["requests"].get("/cgi-bin/token", 0))


def running_tenants(runner: ShardRunner) -> set[str]:
    return {lst.tenant for lst in runner.listeners if lst.status.state != "stopped"}


async def settled(emu: Emulator, runners: Sequence[ShardRunner], shards: int = SHARDS) -> bool:
    """Every shard held by exactly one runner, each runner holding some, each running
    exactly what it holds, and every tenant with exactly one open listen."""
    owned = [r.leases.owned for r in runners]
    if not all(owned):
        return False
    if sum(len(o) for o in owned) != shards or len(frozenset().union(*owned)) != shards:
        return False
    if any(r.running != r.leases.owned for r in runners):
        return False
    return all(n == 1 for n in (await listening(emu)).values())


@pytest.mark.rabbitmq
async def test_two_relays_split_the_shards_and_a_graceful_stop_hands_all_over(
    tmp_path: Path, emu: Emulator, prefix: str
) -> None:
    async with relay(lease_settings(emu, tmp_path, "r-a", prefix)) as (a, a_metrics):
        ra = runner_of(a)
        async with contextlib.AsyncExitStack() as b_stack:
            b, b_metrics = await b_stack.enter_async_context(
                relay(lease_settings(emu, tmp_path, "r-b", prefix))
            )
            rb = runner_of(b)
            await eventually(lambda: settled(emu, [ra, rb]), what="the shards split, all listen")
            assert ra.leases.owned and rb.leases.owned, "both relays own shards"
            on_a, on_b = running_tenants(ra), running_tenants(rb)
            assert on_a | on_b == set(TENANTS) and not on_a & on_b
            b_share = len(rb.leases.owned)

            started = time.monotonic()
            await b_stack.aclose()  # B stops gracefully (what SIGTERM does)

        await eventually(lambda: settled(emu, [ra]), seconds=10, what="A owns all, all listen")
        print(f"graceful stop -> A runs all 6 tenants after {time.monotonic() - started:.2f} s")
        assert running_tenants(ra) == set(TENANTS)
        status = (await a.service.status()).sharding
        assert status is not None and status.owned == tuple(range(SHARDS))
        assert status.live == ("r-a",) and not status.standby

    released = b_metrics.get_sample_value(
        "exmail_relay_shard_releases_total", {"reason": "shutdown"}
    )
    assert released == b_share
    gaps = a_metrics.get_sample_value("exmail_relay_takeover_gap_seconds_count")
    assert gaps is not None and gaps >= 1
    assert a_metrics.get_sample_value("exmail_relay_shard_acquisitions_total") == SHARDS
    assert a_metrics.get_sample_value("exmail_relay_owned_shards") == 0, "A stopped too"


@pytest.mark.rabbitmq
async def test_a_shard_handed_over_for_balance_stops_its_listeners_first(
    tmp_path: Path, emu: Emulator, prefix: str
) -> None:
    async with relay(lease_settings(emu, tmp_path, "r-a", prefix)) as (a, a_metrics):
        ra = runner_of(a)
        await eventually(lambda: settled(emu, [ra]), what="A alone owns all, all listen")
        before = {lst.tenant: lst for lst in ra.listeners}

        overlaps: list[dict[str, int]] = []

        async def sample() -> None:
            while True:
                counts = await listening(emu)
                if any(n > 1 for n in counts.values()):
                    overlaps.append(counts)

        sampler = asyncio.create_task(sample())
        try:
            async with relay(lease_settings(emu, tmp_path, "r-b", prefix)) as (b, _):
                rb = runner_of(b)
                await eventually(lambda: settled(emu, [ra, rb]), what="B took its share")
                moved = running_tenants(rb)
                released = a_metrics.get_sample_value(
                    "exmail_relay_shard_releases_total", {"reason": "balance"}
                )
                assert released == len(rb.leases.owned)
                assert moved, "some tenant moved to B"
                for tenant in moved:
                    assert before[tenant].status.state == "stopped", "A's listener stopped"
                    assert tenant not in running_tenants(ra)
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        assert not overlaps, f"two open listens for one tenant: {overlaps[:3]}"


@pytest.mark.rabbitmq
async def test_a_standby_is_ready_and_takes_over_from_the_broker_checkpoint(
    tmp_path: Path, emu: Emulator, prefix: str
) -> None:
    """A owns the one shard and bootstraps every tenant; its committed Vers go to the
    broker's checkpoint stream. B, a standby with a journal of its own (empty), is
    ready; when A stops, B resumes every tenant from the Ver A committed (read from the
    stream before its first listen) instead of bootstrapping, and reports a directory
    change made after the takeover."""
    one_shard = {"shards": 1}
    async with contextlib.AsyncExitStack() as a_stack:
        a, _ = await a_stack.enter_async_context(
            relay(lease_settings(emu, tmp_path, "r-a", prefix, **one_shard))
        )
        ra = runner_of(a)
        await eventually(lambda: settled(emu, [ra], 1), what="A owns the one shard")

        async def a_committed() -> dict[str, int]:
            return await a.service.journal.checkpoints()

        a_vers = await eventually(
            lambda: _all_of(a_committed, TENANTS), what="A's bootstrap checkpoints"
        )
        async with relay(lease_settings(emu, tmp_path, "r-b", prefix, **one_shard)) as (b, _):
            rb = runner_of(b)
            await eventually(lambda: "r-a" in rb.leases.live, what="B hears A")
            health = await b.service.health()
            assert health.healthy, health.failing
            assert "leases" in health.ok
            status = (await b.service.status()).sharding
            assert status is not None and status.standby and status.owned == ()
            assert status.mode == "lease" and status.live == ("r-a", "r-b")
            assert await b.service.journal.checkpoints() == {}, "a standby reads nothing"

            await a_stack.aclose()
            await eventually(lambda: settled(emu, [rb], 1), seconds=10, what="B took over")
            assert await b.service.journal.checkpoints() == a_vers, "resumed from the stream"
            by_tenant = {t.name: t for t in (await b.service.status()).tenants}
            assert all(sum(t.events_by_type.values()) == 0 for t in by_tenant.values()), (
                "no tenant bootstrapped again"
            )
            hire = {"action": "add", "alias": "hire@t0.example.com", "name": "Hire"}
            await control(emu, "user", {**hire, "company": admin("t0")})

            async def hire_reported() -> bool:
                tenants = {t.name: t for t in (await b.service.status()).tenants}
                return tenants["t0"].events_by_type.get("exmail.user.added", 0) == 1

            await eventually(hire_reported, seconds=10, what="B reports the change")
            status = (await b.service.status()).sharding
            assert status is not None and not status.standby
            assert status.last_handoff is not None and status.last_handoff.kind == "acquired"


@pytest.mark.rabbitmq
async def test_a_checkpoint_read_that_fails_makes_the_shard_wait_not_bootstrap(
    tmp_path: Path, emu: Emulator, prefix: str
) -> None:
    """The lease is held, but the checkpoint store cannot reach the broker: the shard's
    tenants wait (no listen, no token, no bootstrap into the journal), readiness and
    status say why; once the store's link is back the read completes (nothing kept: a
    new deployment) and the tenants bootstrap as usual."""
    proxy = TcpProxy(*BROKER_ADDRESS)
    await proxy.start()
    port = proxy.port
    await proxy.stop()  # the store's path to the broker is down from the start
    url = f"amqp://guest:guest@127.0.0.1:{port}/"
    s = lease_settings(emu, tmp_path, "r-wait", prefix, shards=1)
    store = CheckpointStore(
        url=SecretStr(url),
        secrets=[SecretStr(DEPLOYMENT_SECRET)],
        shards=1,
        prefix=prefix,
        heartbeat=2,
        read_timeout=0.5,
        reconnect_backoff=Backoff(base=0.05, cap=0.3),
    )
    try:
        async with store, relay(s, checkpoints=store) as (running, registry):
            runner = runner_of(running)
            await eventually(lambda: runner.leases.owned == {0}, what="the lease")
            await eventually(lambda: 0 in runner.waiting, what="the shard to wait")
            health = await running.service.health()
            assert "checkpoints" in health.failing, health
            assert "shard 0 waits for its checkpoints" in health.failing["checkpoints"]
            sharding = (await running.service.status()).sharding
            assert sharding is not None and sharding.checkpoints is not None
            assert "0" in sharding.checkpoints.waiting
            assert not sharding.checkpoints.connected
            tenants = (await running.service.status()).tenants
            assert all("waiting for checkpoints" in (t.last_error or "") for t in tenants)
            assert registry.get_sample_value("exmail_relay_checkpoint_waiting_shards") == 1
            await asyncio.sleep(1.5)  # several failed reads: still nothing bootstrapped
            assert await running.service.journal.checkpoints() == {}, "no bootstrap"
            assert sum((await listening(emu)).values()) == 0
            assert await token_fetches(emu) == 0

            await proxy.start()
            await eventually(
                lambda: _all_of(running.service.journal.checkpoints, TENANTS),
                seconds=15,
                what="the tenants to bootstrap after a complete read",
            )
            assert runner.waiting == {}
            health = await running.service.health()
            assert "checkpoints" in health.ok, health
            assert registry.get_sample_value("exmail_relay_checkpoint_waiting_shards") == 0
    finally:
        await proxy.stop()


@pytest.mark.rabbitmq
async def test_a_forged_checkpoint_changes_no_tenants_ver(
    tmp_path: Path, emu: Emulator, prefix: str
) -> None:
    """Somebody with publish rights on the vhost puts snapshots in the shard's queue that
    push every tenant far ahead (which would make the next owner skip every change):
    unsigned, and signed with another deployment's secret. The new owner resumes from
    the Vers the deployment committed and counts the forgeries."""
    one_shard = {"shards": 1}
    async with relay(lease_settings(emu, tmp_path, "r-a", prefix, **one_shard)) as (a, _):
        ra = runner_of(a)
        await eventually(lambda: settled(emu, [ra], 1), what="A owns the one shard")
        committed = await eventually(
            lambda: _all_of(a.service.journal.checkpoints, TENANTS), what="A's bootstrap"
        )
    body = encode(0, dict.fromkeys(TENANTS, 10**15))
    other = sign(KIND, body, secret=b"another-deployment-secret-0000", at_ms=1)
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        for headers in ({}, {HEADER: other}):
            await channel.default_exchange.publish(
                aio_pika.Message(body, headers=headers), routing_key=f"{prefix}.checkpoint.0"
            )
    async with relay(lease_settings(emu, tmp_path, "r-b", prefix, **one_shard)) as (b, registry):
        rb = runner_of(b)
        await eventually(lambda: settled(emu, [rb], 1), seconds=10, what="B took over")
        assert await b.service.journal.checkpoints() == committed
        sharding = (await b.service.status()).sharding
        assert sharding is not None and sharding.checkpoints is not None
        assert sharding.checkpoints.refused == 2
        refused = {
            reason: registry.get_sample_value(
                "exmail_relay_broker_messages_refused_total",
                {"kind": "checkpoint", "reason": reason},
            )
            for reason in ("unsigned", "bad_signature")
        }
        assert refused == {"unsigned": 1.0, "bad_signature": 1.0}


def user_event_ids(running: Running, tenant: str) -> dict[tuple[str, str], str]:
    """(type, account) -> event id of the ``exmail.user.*`` events ``tenant`` committed."""
    found: dict[tuple[str, str], str] = {}
    for listener in runner_of(running).listeners:
        if listener.tenant == tenant:
            for _, kind, event_id, subject in listener.status.recent:
                if kind.startswith("exmail.user."):
                    found[(kind, subject)] = event_id
    return found


@pytest.mark.rabbitmq
async def test_a_takeover_from_an_older_checkpoint_re_emits_with_identical_ids(
    tmp_path: Path, emu: Emulator, prefix: str
) -> None:
    """A reports a directory change (Ver v1 -> v2) and stops. The broker's checkpoint is
    then older than what A committed (v1: as after a lost confirm), and another change
    is made. B, with an empty journal, lists from v1 and reports A's change again, in a
    listing with another new Ver: the same change carries the same id."""
    one_shard = {"shards": 1}
    hire = {"action": "add", "alias": "hire@t0.example.com", "name": "Hire"}
    async with relay(lease_settings(emu, tmp_path, "r-a", prefix, **one_shard)) as (a, _):
        ra = runner_of(a)
        await eventually(lambda: settled(emu, [ra], 1), what="A owns the one shard")
        before = await eventually(
            lambda: _all_of(a.service.journal.checkpoints, TENANTS), what="A's bootstrap"
        )
        await control(emu, "user", {**hire, "company": admin("t0")})
        await eventually(lambda: user_event_ids(a, "t0"), what="A reports the hire")
        a_ids = user_event_ids(a, "t0")
    # The kept snapshot goes back to v1 (signed: it is the deployment's own).
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        queue = f"{prefix}.checkpoint.0"
        await (await channel.get_queue(queue)).purge()
        body = encode(0, before)
        header = sign(KIND, body, secret=DEPLOYMENT_SECRET.encode(), at_ms=int(time.time() * 1000))
        await channel.default_exchange.publish(
            aio_pika.Message(body, headers={HEADER: header}), routing_key=queue
        )
    other = {"action": "add", "alias": "other@t0.example.com", "name": "Other"}
    await control(emu, "user", {**other, "company": admin("t0")})
    async with relay(lease_settings(emu, tmp_path, "r-b", prefix, **one_shard)) as (b, _):
        await eventually(
            lambda: len(user_event_ids(b, "t0")) >= 2, seconds=15, what="B lists from v1"
        )
        b_ids = user_event_ids(b, "t0")
    key = ("exmail.user.added", "hire@t0.example.com")
    assert b_ids[key] == a_ids[key], "the same change, the same id"
    assert b_ids[("exmail.user.added", "other@t0.example.com")] != a_ids[key]


async def _all_of(
    read: Callable[[], Awaitable[dict[str, int]]], names: list[str]
) -> dict[str, int]:
    found = await read()
    return found if set(names) <= set(found) else {}


@pytest.mark.rabbitmq
async def test_a_planned_release_passes_the_gate_while_the_lease_is_still_held(
    prefix: str,
) -> None:
    """The gate is what lets the runner stop a shard's listeners before anybody else may
    take the shard: when it runs, the lease queue must still be ours."""
    seen: list[tuple[int, str, str]] = []
    probe = await aio_pika.connect(AMQP_URL)
    async with probe:

        async def gate(shard: int, reason: str) -> None:
            channel = await probe.channel()
            try:
                await channel.declare_queue(f"{prefix}.lease.{shard}", exclusive=True)
            except aiormq.exceptions.ChannelLockedResource:
                seen.append((shard, reason, "held"))
            else:
                seen.append((shard, reason, "free"))
                await channel.queue_delete(f"{prefix}.lease.{shard}")

        manager = LeaseManager(
            url=SecretStr(AMQP_URL),
            secrets=[SecretStr(DEPLOYMENT_SECRET)],
            replica_id="gate",
            shards=2,
            prefix=prefix,
            heartbeat=2,
            tick=0.5,
            before_release=gate,
        )
        async with manager:
            await eventually(lambda: manager.owned == {0, 1}, what="both shards held")
        assert sorted(seen) == [(0, "shutdown", "held"), (1, "shutdown", "held")]
        channel = await probe.channel()
        for shard in (0, 1):  # and released after the gate: free to declare now
            await channel.declare_queue(f"{prefix}.lease.{shard}", exclusive=True)


# -- the token fence -------------------------------------------------------------------


async def test_a_fenced_token_cache_fetches_nothing() -> None:
    fetched: list[str] = []

    async def fetch() -> tuple[SecretStr, float]:
        fetched.append("x")
        return SecretStr(f"token-{len(fetched)}"), 7200.0

    holds = [True]
    cache = TokenCache(fetch, fence=lambda: holds[0])
    first = await cache.get()
    second = await cache.refresh(first)  # still holding: renewed
    assert second.get_secret_value() == "token-2"
    holds[0] = False
    with pytest.raises(TokenFenced):
        await cache.refresh(second)
    assert len(fetched) == 2, "no fetch once the fence says no"
    # Not even the cached token, a forced one or a first fetch without the lease (a
    # non-owner's gateway call must never use or take the owner's token).
    with pytest.raises(TokenFenced):
        await cache.get()
    with pytest.raises(TokenFenced):
        await cache.get(force=True)
    with pytest.raises(TokenFenced):
        await TokenCache(fetch, fence=lambda: False).get()
    assert len(fetched) == 2


async def test_a_listener_that_lost_its_lease_lets_the_tenant_go_without_a_token_fetch(
    tmp_path: Path, emu: Emulator
) -> None:
    tenant = TenantSettings(**tenant_settings(emu, "t0"))
    holds = [True]
    async with (
        Journal(tmp_path / "j.sqlite3") as journal,
        client_for(tenant, token_fence=lambda: holds[0]) as client,
        client_for(tenant) as new_owner,
    ):
        listener = Listener(tenant="t0", client=client, journal=journal, route=Router(()))
        task = asyncio.create_task(listener.run())
        try:
            await eventually(lambda: listener.status.state == "connected", what="listening")
            holds[0] = False  # the lease went elsewhere...
            await new_owner.user_list(0)  # ...and the new owner fetched the token
            fetches = await token_fetches(emu)
            await asyncio.wait_for(task, 10)  # run() ends: the tenant is let go
        finally:
            listener.stop()
            await asyncio.gather(task, return_exceptions=True)
        assert listener.status.state == "stopped"
        assert await token_fetches(emu) == fetches, "the fenced replica fetched no token"
        assert (await listening(emu))["t0"] == 0


async def test_a_fence_closing_during_a_directory_expansion_commits_nothing(
    emu: Emulator,
) -> None:
    """``user/get`` refused by the fence (the lease went mid-expansion) must end the
    change, not report the user without a profile: the old owner would commit degraded
    user events and a checkpoint the next owner then reports again."""
    tenant = TenantSettings(**tenant_settings(emu, "t0"))
    async with client_for(tenant, token_fence=lambda: False) as client:
        skipped: list[str] = []
        enricher = Enricher("t0", client, concurrency=2, skipped=lambda k, d: skipped.append(d))
        entry = UserListEntry(alias="u0@t0.example.com", code=1, action=UserAction.ADDED)
        with pytest.raises(TokenFenced):
            await enricher.user_events([entry], 7, datetime.now(UTC), snapshot=False)
    assert skipped == [], "a fenced lookup is not a refusal to skip past"


# -- a freshness lapse while the shard stays held ---------------------------------------


@pytest.mark.rabbitmq
async def test_tenants_let_go_by_a_freshness_lapse_listen_again_while_the_shard_is_held(
    tmp_path: Path, emu: Emulator, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under load the lease's freshness can lapse by a hair (the loop runs a fenced
    request after ``fresh_until`` and before the confirm that renews it): the fence says
    "not owner", the listener lets its tenant go, and the lease is confirmed again
    without ever being lost. The runner must start such a tenant again; before, it stayed
    ``stopped`` until the shard was taken again (80 of 5,000 tenants in an unpaced run)."""
    async with relay(lease_settings(emu, tmp_path, "r-lapse", prefix)) as (r, metrics):
        runner = runner_of(r)
        await eventually(lambda: settled(emu, [runner]), what="one relay runs all 6 tenants")
        manager = runner.leases
        held, fetches = manager.owned, await token_fetches(emu)

        # The lapse: the fence answers "not owner" for every shard, the leases stay held.
        monkeypatch.setattr(manager, "holds", lambda shard: False)
        await eventually(
            lambda: all(lst.status.state == "stopped" for lst in runner.listeners),
            seconds=10,
            what="every tenant let go by the fence",
        )
        assert manager.owned == held and manager.connected, "no lease was lost"
        assert sum((await listening(emu)).values()) == 0
        monkeypatch.undo()  # the next confirm: the leases are fresh again

        await eventually(lambda: settled(emu, [runner]), seconds=10, what="all listen again")
        assert running_tenants(runner) == set(TENANTS)
        assert manager.owned == held, "the same leases all along"
        assert await token_fetches(emu) == fetches, "the cached tokens were used again"
        assert runner.resumed == dict.fromkeys(TENANTS, 1), "each resume counted once"
        resumes = metrics.get_sample_value("exmail_relay_fence_resumes_total")
        assert resumes == len(TENANTS)


@pytest.mark.rabbitmq
async def test_a_lapse_that_ends_in_a_lost_lease_restarts_nothing_until_the_shard_is_retaken(
    tmp_path: Path, emu: Emulator, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other way a lapse ends: the freshness timer fires, every lease is given up.
    The tenants let go must not be started again by the old shard entries; they listen
    again only through the shards' next acquisition (from the broker's checkpoint)."""
    async with relay(lease_settings(emu, tmp_path, "r-lost", prefix)) as (r, metrics):
        runner = runner_of(r)
        await eventually(lambda: settled(emu, [runner]), what="one relay runs all 6 tenants")
        manager = runner.leases
        monkeypatch.setattr(manager, "holds", lambda shard: False)
        await eventually(
            lambda: all(lst.status.state == "stopped" for lst in runner.listeners),
            seconds=10,
            what="every tenant let go by the fence",
        )
        manager._expired()  # the freshness timer: unconfirmed for a heartbeat, leases given up
        assert manager.owned == frozenset()
        monkeypatch.undo()

        await eventually(lambda: settled(emu, [runner]), seconds=20, what="all shards retaken")
        assert runner.resumed == {}, "no old entry started a tenant again"
        assert metrics.get_sample_value("exmail_relay_fence_resumes_total") == 0
        assert metrics.get_sample_value("exmail_relay_shard_acquisitions_total") == 2 * SHARDS
