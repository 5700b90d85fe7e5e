"""Shard leases on the real broker: managers split the shards, hand them over when a
replica joins or leaves, lose them all at once with their link, and never both claim a
shard at any sampled moment. Every takeover time measured here is printed (``-s``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aio_pika
import aiormq
import pytest
from pydantic import SecretStr

from relay.core.shards import LeaseChange
from relay.runtime.leases import LeaseManager
from tests.runtime.lease_support import FreezingProxy, Recorder, Watch, wait_until
from tests.support import DEPLOYMENT_SECRET, TcpProxy

pytestmark = pytest.mark.rabbitmq

BROKER = "amqp://guest:guest@127.0.0.1:5672/"
REPO = str(Path(__file__).resolve().parents[2])
# Small heartbeats so link loss is seen in seconds; the tick stays a third of it.
HEARTBEAT = 2
TICK = 0.3


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A private lease namespace; the presence exchange is removed afterwards (the
    lease, member and inbox queues are exclusive and go with their connections)."""
    name = f"exmail.relay.test-{uuid.uuid4().hex[:12]}"
    yield name
    connection = await aio_pika.connect(BROKER)
    async with connection:
        channel = await connection.channel()
        await channel.exchange_delete(f"{name}.presence")


def manager(
    prefix: str,
    replica: str,
    url: str = BROKER,
    recorder: Recorder | None = None,
    *,
    heartbeat: int = HEARTBEAT,
    tick: float = TICK,
) -> LeaseManager:
    return LeaseManager(
        url=SecretStr(url),
        secrets=[SecretStr(DEPLOYMENT_SECRET)],
        replica_id=replica,
        shards=16,
        prefix=prefix,
        heartbeat=heartbeat,
        tick=tick,
        on_change=recorder,
    )


def covered(*managers: LeaseManager) -> bool:
    owned = [m.owned for m in managers]
    return sum(len(o) for o in owned) == 16 and set().union(*owned) == set(range(16))


async def locked_on_broker(prefix: str, shard: int) -> bool:
    """Whether another connection holds the lease queue of ``shard``, asked independently."""
    connection = await aio_pika.connect(BROKER)
    async with connection:
        channel = await connection.channel()
        try:
            await channel.declare_queue(f"{prefix}.lease.{shard}", passive=True)
        except aiormq.exceptions.ChannelLockedResource:
            return True
        except aiormq.exceptions.ChannelNotFoundEntity:
            return False
        return False


async def test_two_managers_split_sixteen_shards_eight_each(prefix: str) -> None:
    a, b = manager(prefix, "replica-a"), manager(prefix, "replica-b")
    async with Watch([a, b]) as watch, a, b:
        took = await wait_until(
            lambda: covered(a, b) and len(a.owned) == len(b.owned) == 8, 30, "an 8/8 split"
        )
        print(f"\n2 managers: 16 shards split 8/8 after {took:.2f}s")
        assert not a.owned & b.owned
        assert a.live == b.live == {"replica-a", "replica-b"}
        assert all(a.holds(s) for s in a.owned) and not any(a.holds(s) for s in b.owned)
        # The ownership is the broker's: every lease queue is locked by someone.
        assert [await locked_on_broker(prefix, s) for s in range(16)] == [True] * 16
    assert watch.overlaps == [] and watch.samples > 10
    assert a.owned == b.owned == frozenset()


async def test_a_third_manager_joins_and_shards_are_handed_over(prefix: str) -> None:
    ra, rb = Recorder(), Recorder()
    a, b = manager(prefix, "replica-a", recorder=ra), manager(prefix, "replica-b", recorder=rb)
    async with Watch([a, b]) as watch, a, b:
        await wait_until(lambda: covered(a, b) and len(a.owned) == 8, 30, "an 8/8 split")
        c = manager(prefix, "replica-c")
        watch.add(c)
        joined = time.monotonic()
        async with c:
            took = await wait_until(
                lambda: covered(a, b, c) and max(len(m.owned) for m in (a, b, c)) <= 6,
                30,
                "a split of at most 6 each",
            )
            print(
                f"\n3rd manager joined: balanced after {took:.2f}s: ",
                [len(m.owned) for m in (a, b, c)],
            )
            assert len(c.owned) >= 4
            # The extras went back for balance, not through some failure.
            handed = ra.released("balance") + rb.released("balance")
            # 2 from each at least (more only if presence flapped under load).
            assert len(handed) >= 4 and all(t >= joined for t, _ in handed)
            assert ra.released("connection_lost") == rb.released("connection_lost") == []
    assert watch.overlaps == [], watch.overlaps[:5]
    assert watch.samples > 10


async def test_a_graceful_close_hands_every_shard_over(prefix: str) -> None:
    ra = Recorder()
    a, b = manager(prefix, "replica-a", recorder=ra), manager(prefix, "replica-b")
    async with Watch([a, b]) as watch, b:
        await a.__aenter__()
        try:
            await wait_until(lambda: covered(a, b) and len(a.owned) == 8, 30, "an 8/8 split")
            had = a.owned
            closed = time.monotonic()
            await a.close()
        finally:
            await a.close()
        assert a.owned == frozenset()
        assert sorted(s for _, s in ra.released("shutdown")) == sorted(had)
        await wait_until(lambda: b.owned == set(range(16)), 15, "b to own all 16")
        took = time.monotonic() - closed
        print(f"\ngraceful close: the survivor owned all 16 shards {took:.2f}s after close()")
        assert b.live == {"replica-b"}, "the goodbye removed the leaver at once"
    assert watch.overlaps == []


async def test_link_loss_drops_every_lease_at_once_and_the_other_takes_them(
    prefix: str,
) -> None:
    proxy = TcpProxy("127.0.0.1", 5672)
    await proxy.start()
    ra = Recorder()
    a = manager(prefix, "replica-a", url=f"amqp://guest:guest@127.0.0.1:{proxy.port}/", recorder=ra)
    b = manager(prefix, "replica-b")
    try:
        async with Watch([a, b]) as watch, a, b:
            await wait_until(lambda: covered(a, b) and len(a.owned) == 8, 30, "an 8/8 split")
            had = a.owned
            cut = time.monotonic()
            await proxy.stop()
            detected = await wait_until(lambda: not a.owned, 15, "a to notice the loss")
            lost = ra.released("connection_lost")
            assert sorted(s for _, s in lost) == sorted(had)
            assert max(t for t, _ in lost) - min(t for t, _ in lost) < 0.01, "all at once"
            assert not any(a.holds(s) for s in range(16))
            took = await wait_until(lambda: b.owned == set(range(16)), 30, "b to own all 16")
            took += detected
            print(
                f"\nlink cut (socket closed): loser noticed after {detected:.2f}s, "
                f"survivor owned all 16 after {time.monotonic() - cut:.2f}s"
            )
            # The link comes back: a starts from nothing and gets its share again.
            await proxy.start()
            back = await wait_until(
                lambda: covered(a, b) and len(a.owned) == 8, 30, "an 8/8 split again"
            )
            print(f"link back: 8/8 again after {back:.2f}s")
        assert watch.overlaps == [], watch.overlaps[:5]
    finally:
        await proxy.stop()


@pytest.mark.parametrize(
    ("heartbeat", "tick"),
    [
        pytest.param(HEARTBEAT, TICK, id="test-timing"),
        pytest.param(5, 1.0, id="production-defaults", marks=pytest.mark.slow),
    ],
)
async def test_a_silent_partition_gives_leases_up_before_the_broker_frees_them(
    prefix: str, heartbeat: int, tick: float
) -> None:
    """The link goes silent (no FIN, no RST): only heartbeats tell. The cut-off manager
    must stop claiming its shards before the broker frees them for the other."""
    proxy = FreezingProxy("127.0.0.1", 5672)
    await proxy.start()
    ra, rb = Recorder(), Recorder()
    url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/"
    timing = {"heartbeat": heartbeat, "tick": tick}
    a, b = (
        manager(prefix, "replica-a", url=url, recorder=ra, **timing),
        manager(prefix, "replica-b", recorder=rb, **timing),
    )
    try:
        async with Watch([a, b], every=0.002) as watch, a, b:
            await wait_until(lambda: covered(a, b) and len(a.owned) == 8, 30, "an 8/8 split")
            had = a.owned
            cut = time.monotonic()
            proxy.freeze()
            gave_up = await wait_until(lambda: not a.owned, 15, "a to give its leases up")
            await wait_until(lambda: b.owned == set(range(16)), 30, "b to own all 16")
            first_taken = min(
                t for t, c in rb.changes if c.kind == "acquired" and c.shard in had and t > cut
            )
            print(
                f"\nsilent partition (heartbeat {heartbeat}s, tick {tick}s): "
                f"loser gave up after {gave_up:.2f}s, "
                f"first shard taken over after {first_taken - cut:.2f}s, "
                f"all 16 after {time.monotonic() - cut:.2f}s"
            )
            assert gave_up <= heartbeat + 1.0, "its own clock, not aiormq's 3*(hb+1)"
            assert cut + gave_up < first_taken, "given up before anyone else held a shard"
        assert watch.overlaps == [], watch.overlaps[:5]
    finally:
        await proxy.stop()


async def test_a_lease_held_elsewhere_is_refused_and_the_manager_carries_on(
    prefix: str,
) -> None:
    squatter = await aio_pika.connect(BROKER)
    try:
        channel = await squatter.channel()
        for shard in (3, 7):
            await channel.declare_queue(f"{prefix}.lease.{shard}", exclusive=True)
        async with manager(prefix, "replica-a") as a:
            await wait_until(lambda: a.owned == set(range(16)) - {3, 7}, 30, "the 14 free shards")
            # It keeps trying 3 and 7 every tick (RESOURCE_LOCKED each time) and lives on.
            await wait_until(lambda: a.last_error is None, 5, "no error")
            assert a.connected
            assert not a.holds(3) and not a.holds(7)
            await squatter.close()
            took = await wait_until(lambda: a.owned == set(range(16)), 15, "shards 3 and 7")
            print(f"\nthe squatter left: 3 and 7 taken after {took:.2f}s")
    finally:
        await squatter.close()


async def test_changes_can_be_iterated_until_the_manager_closes(prefix: str) -> None:
    seen: list[LeaseChange] = []
    a = manager(prefix, "replica-a")

    async def follow() -> None:
        async for change in a.changes():
            seen.append(change)

    async with a:
        follower = asyncio.create_task(follow())
        await wait_until(lambda: len(seen) == 16, 30, "16 acquisitions")
    await asyncio.wait_for(follower, 10)
    assert [c.kind for c in seen[:16]] == ["acquired"] * 16
    assert sorted(c.shard for c in seen[16:]) == list(range(16))
    assert {c.reason for c in seen[16:]} == {"shutdown"}


async def test_no_password_in_repr_errors_or_logs(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with socket_closed() as port:
        url = f"amqp://relay:s3cret-pw@127.0.0.1:{port}/?heartbeat=9"
        async with LeaseManager(
            url=SecretStr(url),
            secrets=[SecretStr(DEPLOYMENT_SECRET)],
            replica_id="r",
            prefix=prefix,
            heartbeat=HEARTBEAT,
            tick=TICK,
        ) as m:
            await wait_until(lambda: m.last_error is not None, 15, "a connect error")
            assert "s3cret-pw" not in repr(m) and "s3cret-pw" not in m.last_error
            assert "relay:***@127.0.0.1" in repr(m)
            assert m.owned == frozenset()
    assert caplog.records, "the failure was logged"
    assert "s3cret-pw" not in caplog.text


@contextlib.contextmanager
def socket_closed() -> Iterator[int]:
    """A loopback port nobody listens on (bound, never listening, so nobody else gets it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


async def test_a_crash_in_the_manager_surfaces_on_close(prefix: str) -> None:
    """A bug (here: a callback that raises) ends the loop; close() raises it, and the
    manager claims nothing from then on."""

    def broken(change: LeaseChange) -> None:
        raise RuntimeError("bug in a callback")

    m = LeaseManager(
        url=SecretStr(BROKER),
        secrets=[SecretStr(DEPLOYMENT_SECRET)],
        replica_id="r",
        prefix=prefix,
        heartbeat=HEARTBEAT,
        tick=TICK,
        on_change=broken,
    )
    await m.__aenter__()
    await wait_until(lambda: m.last_error is not None, 30, "the crash to be noticed")
    assert m.owned == frozenset()
    # Its connection was closed on the way out: the broker holds no lease for it.
    assert [await locked_on_broker(prefix, s) for s in range(16)] == [False] * 16
    with pytest.raises(RuntimeError, match="bug in a callback"):
        await m.close()


async def test_a_killed_replica_process_is_taken_over(prefix: str) -> None:
    """The common death: the process is killed (a crash, an OOM kill, a pod deleted). Its
    kernel closes the socket, the broker frees the leases at once, and the survivor takes
    them as soon as presence times the dead replica out."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.runtime.lease_child",
        BROKER,
        prefix,
        "replica-child",
        str(HEARTBEAT),
        str(TICK),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": REPO},
    )
    assert child.stdout is not None
    child_owned: set[int] = set()

    async def follow() -> None:
        assert child.stdout is not None
        while line := await child.stdout.readline():
            child_owned.clear()
            child_owned.update(json.loads(line))

    follower = asyncio.create_task(follow())
    try:
        async with manager(prefix, "replica-b") as b:
            await wait_until(
                lambda: len(child_owned) == len(b.owned) == 8 and not child_owned & b.owned,
                30,
                "an 8/8 split with the child",
            )
            killed = time.monotonic()
            child.kill()
            await child.wait()
            await wait_until(lambda: b.owned == set(range(16)), 30, "b to own all 16")
            took = time.monotonic() - killed
            print(f"\nreplica process killed (SIGKILL): survivor owned all 16 after {took:.2f}s")
            # Bounded by the presence timeout (3 ticks), not by heartbeats.
            assert took < 3 * TICK + HEARTBEAT
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
        await asyncio.wait_for(follower, 10)


async def test_a_callback_failing_on_link_loss_still_surfaces(prefix: str) -> None:
    """The link-loss report runs inside aio-pika's close callback, which only logs what
    it catches; the manager re-raises it from its own loop instead."""
    proxy = TcpProxy("127.0.0.1", 5672)
    await proxy.start()

    def fragile(change: LeaseChange) -> None:
        if change.reason == "connection_lost":
            raise RuntimeError("cannot handle a loss")

    m = LeaseManager(
        url=SecretStr(f"amqp://guest:guest@127.0.0.1:{proxy.port}/"),
        secrets=[SecretStr(DEPLOYMENT_SECRET)],
        replica_id="r",
        prefix=prefix,
        heartbeat=HEARTBEAT,
        tick=TICK,
        on_change=fragile,
    )
    try:
        await m.__aenter__()
        await wait_until(lambda: len(m.owned) == 16, 30, "all 16 shards")
        await proxy.stop()
        await wait_until(lambda: m.last_error is not None, 15, "the crash to be noticed")
        assert m.last_error == "internal error: RuntimeError"
        assert m.owned == frozenset()
        with pytest.raises(RuntimeError, match="cannot handle a loss"):
            await m.close()
    finally:
        await proxy.stop()


async def test_after_a_silent_partition_the_replica_waits_for_its_old_connection(
    prefix: str,
) -> None:
    """The path heals at once but the old connection stays silent: the replica connects
    anew while the broker still holds its old connection (member queue and leases). It
    takes nothing until the broker drops that connection, then gets its share back."""
    proxy = FreezingProxy("127.0.0.1", 5672)
    await proxy.start()
    ra = Recorder()
    url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/"
    a, b = manager(prefix, "replica-a", url=url, recorder=ra), manager(prefix, "replica-b")
    try:
        async with Watch([a, b], every=0.002) as watch, a, b:
            await wait_until(lambda: covered(a, b) and len(a.owned) == 8, 30, "an 8/8 split")
            cut = time.monotonic()
            proxy.freeze(new_connections=False)
            await wait_until(lambda: not a.owned, 15, "a to give its leases up")
            # a reconnects through the healed path but its old connection holds the
            # member queue: refused (RESOURCE_LOCKED), retried, no lease taken meanwhile.
            await wait_until(
                lambda: a.last_error is not None and "RESOURCE_LOCKED" in a.last_error,
                15,
                "a refused its member queue",
            )
            assert not a.owned
            await wait_until(lambda: covered(a, b) and len(a.owned) == 8, 45, "an 8/8 split again")
            regained = [t for t, c in ra.changes if c.kind == "acquired" and t > cut]
            print(
                f"\nhealed path: a took its first lease again {min(regained) - cut:.2f}s "
                f"after the cut, 8/8 after {time.monotonic() - cut:.2f}s"
            )
            assert min(regained) - cut > HEARTBEAT * 2, "not before the broker dropped it"
        assert watch.overlaps == [], watch.overlaps[:5]
    finally:
        await proxy.stop()


async def test_a_replica_with_another_shard_count_is_reported(prefix: str) -> None:
    """Lease 3 of 16 shards and lease 3 of 32 cover different tenants: the locks cannot
    protect a mixed configuration, so both sides say so, loudly."""
    a = manager(prefix, "replica-a")
    b = LeaseManager(
        url=SecretStr(BROKER),
        secrets=[SecretStr(DEPLOYMENT_SECRET)],
        replica_id="replica-b",
        shards=32,
        prefix=prefix,
        heartbeat=HEARTBEAT,
        tick=TICK,
    )
    async with a, b:
        await wait_until(
            lambda: all(m.last_error and "must be the same" in m.last_error for m in (a, b)),
            30,
            "both to report the mismatch",
        )
        assert a.live == {"replica-a"} and b.live == {"replica-b"}


async def test_an_unhealthy_manager_releases_everything_and_rejoins_when_healthy(
    prefix: str,
) -> None:
    """``health()`` naming a reason: every shard goes (``unhealthy``, through the gate),
    none is taken, and the peer, no longer counting it, takes all 16; healthy again, it
    takes its share back. No overlap at any sample."""
    ra = Recorder()
    sick: list[str] = []
    gated: list[tuple[int, str]] = []

    async def gate(shard: int, reason: str) -> None:
        gated.append((shard, reason))

    a, b = manager(prefix, "replica-a", recorder=ra), manager(prefix, "replica-b")
    a.health = lambda: sick[0] if sick else None
    a.before_release = gate
    async with Watch([a, b]) as watch, a, b:
        await wait_until(lambda: covered(a, b) and len(a.owned) == 8, 30, "an 8/8 split")
        sick.append("journal not writable: database or disk is full for 30 s")
        took = await wait_until(lambda: not a.owned and len(b.owned) == 16, 30, "b holding all 16")
        assert a.health() == sick[0]
        assert sorted(s for _, s in ra.released("unhealthy")) == sorted(
            s for s, r in gated if r == "unhealthy"
        )
        assert len(ra.released("unhealthy")) == 8
        assert b.live == {"replica-b"}  # a is not counted while unhealthy
        acquired = len(ra.acquired())
        await asyncio.sleep(1.0)  # several ticks: it takes nothing meanwhile
        assert not a.owned and len(ra.acquired()) == acquired
        sick.clear()
        back = await wait_until(
            lambda: covered(a, b) and len(a.owned) == len(b.owned) == 8, 30, "8/8 again"
        )
        assert a.health() is None
    print(f"\nunhealthy: b held all 16 after {took:.2f}s; healthy: 8/8 after {back:.2f}s")
    assert watch.overlaps == [], watch.overlaps[:5]
