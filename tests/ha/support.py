"""The high-availability group's harness: several ``exmail-relay run`` processes in lease
mode (each its own journal, ``replica_id`` and status port; one lease prefix) on one
emulator serving 12 tenants with redelivery, the real RabbitMQ (one replica may reach
it through a :class:`~tests.support.TcpProxy` only), mail at a steady rate to every
tenant, and an independent consumer counting what arrives.

What the tests measure comes from the emulator's listen log (``Emulator.gaps``,
``overlaps``, ``token_fetches``): it sees every listen of every replica, on the one
monotonic clock of this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika

from relay.core.shards import fair_share, shard_of
from relay.emulator import Emulator, Seed, tenant_key, tenants_seed
from tests.chaos.support import RelayProcess, free_port
from tests.pipeline.support import Broker, Consumer
from tests.support import AMQP_URL, BROKER_ADDRESS, DEPLOYMENT_SECRET, TcpProxy, eventually

SHARDS = 16
TENANTS = [f"t{n:02d}" for n in range(1, 13)]
HEARTBEAT = 2
HOLD = 1.0


def admin(tenant: str) -> str:
    return f"admin@{tenant}.test"


def tenants_of(shards: Iterable[int], tenants: Iterable[str] = TENANTS) -> set[str]:
    wanted = set(shards)
    return {t for t in tenants if shard_of(t, SHARDS) in wanted}


def names(count: int) -> list[str]:
    """The tenant names of ``tenants_seed(count)``: ``t01``, ``t02``, ..."""
    return [f"t{n:02d}" for n in range(1, count + 1)]


@contextlib.asynccontextmanager
async def ha_emulator(count: int = len(TENANTS), hold: float = HOLD) -> AsyncIterator[Emulator]:
    """``count`` tenants (``t01``..); a killed listener's last answer is sent again."""
    seed = Seed(companies=tenants_seed(count))
    async with Emulator(port=0, hold=hold, seed=seed, redeliver=True) as emu:
        yield emu


def _config(
    path: Path,
    emu: Emulator,
    broker: Broker,
    *,
    replica: str,
    prefix: str,
    url: str,
    port: int,
    journal: Path | None = None,
    sharding: str = "",
    sections: str = "",
    tenant_options: str = "",
    tenants: Iterable[str] = TENANTS,
    hold: float = HOLD,
) -> Path:
    entries = "".join(
        f"""
[[tenants]]
name = "{t}"
client_id = "{admin(t)}"
client_secret = "{tenant_key("t", int(t[1:]))}"
api_url = "{emu.api_url}"
token_url = "{emu.token_url}"
login_url = "{emu.login_url}"
hold = {hold}
replica_header = true
{tenant_options}
"""
        for t in tenants
    )
    path.write_text(
        f"""
[journal]
path = "{journal or path.with_suffix(".sqlite3")}"
synchronous = "normal"
{entries}
[amqp]
enabled = true
url = "{url}"
exchange = "{broker.exchange}"
queue = "{broker.queue}"
[sharding]
replica_id = "{replica}"
prefix = "{prefix}"
heartbeat = {HEARTBEAT}
shards = {SHARDS}
secret = "{DEPLOYMENT_SECRET}"
{sharding}
[shutdown]
timeout = 3
[http]
port = {port}
[log]
level = "info"
format = "json"
{sections}
""",
        encoding="utf-8",
    )
    return path


@dataclass
class Replica:
    name: str
    process: RelayProcess
    proxy: TcpProxy | None = None

    @property
    def pid(self) -> int:
        assert self.process.proc is not None
        return self.process.proc.pid

    async def owned(self) -> set[int] | None:
        """The shards this replica says it holds (``/status.json``), None if it cannot say."""
        code, doc = await self.process.get("status.json")
        if code != 200:
            return None
        return set(doc["sharding"]["owned"])

    def started_lines(self) -> int:
        return sum(1 for line in self.process.log_lines() if line.get("message") == "relay started")


@dataclass
class Cluster:
    """Relay processes sharing one emulator, broker and lease prefix."""

    emu: Emulator
    broker: Broker
    prefix: str
    root: Path
    replicas: dict[str, Replica] = field(default_factory=dict)
    sharding: str = ""
    """More ``[sharding]`` lines for every replica (e.g. ``release_after = 3``)."""
    sections: str = ""
    """More sections at the end of every replica's configuration (e.g. ``[[clients]]``)."""
    tenant_options: str = ""
    """More lines for every ``[[tenants]]`` entry (e.g. ``request_timeout = 90``)."""
    tenants: list[str] = field(default_factory=lambda: list(TENANTS))
    hold: float = HOLD

    async def add(
        self,
        name: str,
        *,
        proxied: bool = False,
        journal: Path | None = None,
        url: str = AMQP_URL,
    ) -> Replica:
        """Start replica ``name``; ``journal``: its journal file (default: in ``root``);
        ``url``: its ``[amqp] url`` (``proxied``: through a proxy of its own instead)."""
        proxy = None
        if proxied:
            proxy = TcpProxy(*BROKER_ADDRESS)
            await proxy.start()
            url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/"
        port = free_port()
        config = _config(
            self.root / f"{name}.toml",
            self.emu,
            self.broker,
            replica=name,
            prefix=self.prefix,
            url=url,
            port=port,
            journal=journal,
            sharding=self.sharding,
            sections=self.sections,
            tenant_options=self.tenant_options,
            tenants=self.tenants,
            hold=self.hold,
        )
        process = RelayProcess(config, self.root / f"{name}.log", port)
        await process.start()
        replica = Replica(name, process, proxy)
        self.replicas[name] = replica
        return replica

    async def restart(self, replica: Replica, *, empty_journal: bool = False) -> None:
        """Start a stopped replica again on its configuration and journal (as Kubernetes
        recreates a pod): it drains what its journal still holds, and rejoins. With
        ``empty_journal``, its journal is deleted first (a pod on a new volume)."""
        assert not replica.process.alive
        if empty_journal:
            journal = self.root / f"{replica.name}.sqlite3"
            for path in (journal, Path(f"{journal}-wal"), Path(f"{journal}-shm")):
                path.unlink(missing_ok=True)
        await replica.process.start()
        await self.serving(replica)

    async def serving(self, replica: Replica) -> None:
        """Wait until ``replica`` answers ``/status.json`` (its signal handlers are set)."""

        async def answers() -> bool:
            return await replica.owned() is not None

        await eventually(answers, seconds=30, what=f"{replica.name} to serve its status")

    def alive(self) -> list[Replica]:
        return [r for r in self.replicas.values() if r.process.alive]

    async def ownership(self) -> dict[str, set[int] | None]:
        names = [r.name for r in self.alive()]
        owned = await asyncio.gather(*(self.replicas[n].owned() for n in names))
        return dict(zip(names, owned, strict=True))

    async def settled(self) -> dict[str, set[int]] | None:
        """Every shard held by exactly one live replica, none above its fair share, and
        every tenant listened to by the replica holding its shard; else None."""
        ownership = await self.ownership()
        if any(o is None for o in ownership.values()):
            return None
        owned = {n: o for n, o in ownership.items() if o is not None}
        every = [s for shards in owned.values() for s in shards]
        share = fair_share(SHARDS, len(owned))
        if sorted(every) != list(range(SHARDS)) or any(len(o) > share for o in owned.values()):
            return None
        listening = self.listening()
        for name, shards in owned.items():
            if any(listening.get(admin(t)) != {name} for t in tenants_of(shards, self.tenants)):
                return None
        return owned

    async def settled_with(self, replica: Replica) -> dict[str, set[int]] | None:
        """:meth:`settled`, with ``replica`` holding some shard."""
        owned = await self.settled()
        return owned if owned is not None and owned.get(replica.name) else None

    def listening(self) -> dict[str, set[str]]:
        """The replicas holding an open listen, per tenant admin."""
        out: dict[str, set[str]] = {}
        for listen in self.emu.listens():
            if listen.open:
                out.setdefault(listen.company, set()).add(listen.replica)
        return out

    async def wait_settled(self, seconds: float = 40.0) -> dict[str, set[int]]:
        return await eventually(self.settled, seconds=seconds, what="the shards to settle")

    async def biggest(self) -> tuple[Replica, set[str]]:
        """The live replica owning the most shards (then the most tenants), and its tenants."""
        owned = await self.wait_settled()
        name = max(owned, key=lambda n: (len(owned[n]), len(tenants_of(owned[n], self.tenants))))
        moved = tenants_of(owned[name], self.tenants)
        assert moved, f"{name} owns shards {sorted(owned[name])} but no tenant: {owned}"
        return self.replicas[name], moved

    def kill(self, replica: Replica) -> None:
        assert replica.process.proc is not None
        replica.process.proc.send_signal(signal.SIGKILL)

    def terminate(self, replica: Replica) -> None:
        assert replica.process.proc is not None
        replica.process.proc.send_signal(signal.SIGTERM)

    async def stop_all(self) -> dict[str, int | None]:
        codes: dict[str, int | None] = {}
        for replica in self.replicas.values():
            if replica.proxy is not None and replica.proxy.stalled:
                replica.proxy.resume()
        for replica in self.replicas.values():
            if replica.process.alive:
                assert replica.process.proc is not None
                replica.process.proc.send_signal(signal.SIGTERM)
        for replica in self.replicas.values():
            if replica.process.proc is not None:
                try:
                    codes[replica.name] = await asyncio.wait_for(replica.process.proc.wait(), 30)
                except TimeoutError:
                    replica.process.proc.kill()
                    codes[replica.name] = await replica.process.proc.wait()
        for replica in self.replicas.values():
            if replica.proxy is not None:
                await replica.proxy.stop()
        return codes


async def _delete_names(broker: Broker, prefix: str) -> None:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(broker.queue)
        await channel.exchange_delete(broker.exchange)
        await channel.exchange_delete(f"{prefix}.presence")
        for shard in range(16):  # the checkpoint queues
            await channel.queue_delete(f"{prefix}.checkpoint.{shard}")


@contextlib.asynccontextmanager
async def cluster(
    root: Path,
    replicas: int = 3,
    *,
    sharding: str = "",
    sections: str = "",
    tenant_options: str = "",
    tenants: int = len(TENANTS),
    hold: float = HOLD,
    settle: float = 60.0,
) -> AsyncIterator[tuple[Cluster, Consumer]]:
    """``replicas`` relays (``r1``..) on a fresh emulator, broker names and lease prefix,
    settled; the consumer already counting. Every replica still running at the end is
    stopped with SIGTERM and must exit 0. ``sharding``, ``sections``, ``tenant_options``:
    see :class:`Cluster`; ``tenants``: how many (``t01``..), ``hold``: the listen hold,
    ``settle``: how long the start may take."""
    name = f"test.ha.{uuid.uuid4().hex[:10]}"
    broker = Broker(exchange=name, queue=name)
    try:
        async with ha_emulator(tenants, hold) as emu, Consumer(broker) as consumer:
            group = Cluster(
                emu,
                broker,
                name,
                root,
                sharding=sharding,
                sections=sections,
                tenant_options=tenant_options,
                tenants=names(tenants),
                hold=hold,
            )
            codes: dict[str, int | None] = {}
            try:
                for n in range(1, replicas + 1):
                    await group.add(f"r{n}")
                await group.wait_settled(settle)
                yield group, consumer
            finally:
                running = {r.name for r in group.alive()}
                codes = await group.stop_all()
            bad = {n: c for n, c in codes.items() if n in running and c != 0}
            assert not bad, f"replicas exited badly on SIGTERM: {bad}; logs in {root}"
    finally:
        await _delete_names(broker, name)


class Traffic:
    """Mail at a steady rate, round robin over every tenant, while the block runs; each
    mail sent is recorded with its tenant and the moment it was queued."""

    def __init__(self, emu: Emulator, *, per_second: float = 20.0) -> None:
        self.emu = emu
        self.interval = 1.0 / per_second
        self.sent: list[tuple[str, str, float]] = []  # (mail id, tenant, monotonic)
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        n = 0
        next_at = loop.time()
        while True:
            tenant = TENANTS[n % len(TENANTS)]
            mail_id = self.emu.state.deliver_mail(f"user1@{tenant}.test", subject=f"ha {n}")
            self.sent.append((mail_id, tenant, loop.time()))
            n += 1
            next_at += self.interval
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    async def __aenter__(self) -> Traffic:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def mail_ids(self) -> set[str]:
        return {mail_id for mail_id, _, _ in self.sent}


def delivered(consumer: Consumer, kind: str = "exmail.mail.new") -> list[dict[str, Any]]:
    return [json.loads(m.body) for m in consumer.messages if m.type == kind]


async def all_delivered(consumer: Consumer, traffic: Traffic, seconds: float = 60.0) -> None:
    """Wait until every mail ``traffic`` sent has reached the consumer."""
    wanted = traffic.mail_ids()

    def missing() -> set[str]:
        return wanted - {doc["data"]["mail_id"] for doc in delivered(consumer)}

    await eventually(lambda: not missing(), seconds=seconds, what="every mail sent")


def max_gap(emu: Emulator, tenants: Iterable[str], since: float) -> dict[str, float]:
    """The longest time without a listen since ``since``, per tenant."""
    return {
        t: max((g.seconds for g in emu.gaps(admin(t), since=since)), default=0.0) for t in tenants
    }
