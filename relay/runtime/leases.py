"""Shard leases held on RabbitMQ: which shards this replica owns, right now.

Where it sits: the shard runner asks a :class:`LeaseManager` which shards it owns and
runs those shards' tenants. The decisions are the pure planner's
(:func:`relay.core.shards.plan`); the connection is a :class:`BrokerLink`.

Ownership rests on the broker's locks alone. The lease of shard ``n`` is the exclusive
queue ``<prefix>.lease.<n>``: exclusive queues belong to the connection that declared
them, a second connection declaring one gets ``RESOURCE_LOCKED`` (405, its channel
closed), and the broker deletes them when the connection closes or misses heartbeats.
So this replica holds a shard exactly while its one connection holds that queue.

Presence only sizes the share (and routes gateway calls). Every tick the manager publishes
``{replica, owned, fingerprint}``, signed with the deployment secret
(:mod:`relay.core.presence`), on the fanout exchange ``<prefix>.presence``, and reads the
others' through its own exclusive inbox; a replica not heard from for ``presence_timeout``
counts as gone. Unsigned, forged, stale or malformed messages are dropped and counted; another
shard space or another secret is a *conflict* (logged, shown, failing readiness). Late or wrong
presence makes a replica want too many or too few shards, never hold one that another holds. The
member queue ``<prefix>.member.<id>`` locks the replica id, and makes a replica that reconnects
wait until the broker has dropped its previous connection (and with it the old leases).

The client must stop believing before the broker stops enforcing (aiormq notices a silent
broker later than the broker frees the leases): each tick's presence is published with a
publisher confirm, and a lease counts as held only while :mod:`relay.runtime.freshness` says
so: ``heartbeat`` seconds after the send of the last confirmed publish, or, while a resource
alarm blocks the connection, after the broker's last frame. Past that, every shard is
reported released (``connection_lost``) and the connection is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
)
from pydantic import SecretStr

from relay.core.backoff import Backoff
from relay.core.presence import (
    CONFLICT_MEMORY,
    HEADER,
    ConflictBook,
    Refused,
    encode_presence,
    fingerprint,
    foreign_deployment,
    mismatch,
    read_presence,
    valid_replica_id,
)
from relay.core.shards import DEFAULT_SHARDS, LeaseChange, ReleaseReason, plan
from relay.core.throttle import LogThrottle
from relay.runtime.freshness import LeaseFreshness
from relay.sinks.brokerlink import BrokerLink, LinkLost
from relay.sinks.connect import LINK_ERRORS as _LINK_ERRORS

__all__ = ["PRESENCE_SKEW", "LeaseManager"]

log = logging.getLogger("relay.runtime.leases")

#: How far a peer's clock may be off ours (seconds): presence older than the presence
#: timeout plus this is refused as ``stale`` (a replay).
PRESENCE_SKEW = 10.0


class LeaseManager:
    """Holds this replica's fair share of shard leases. Use as an async context manager.

    ``on_change`` is called, in order, for every lease taken or given up; so are the
    iterators of :meth:`changes`. A lost connection reports every shard released at
    once (``connection_lost``) and reconnects with capped, jittered backoff, starting
    from no shard. Leaving the block (or :meth:`close`) hands every shard over
    (``shutdown``) and closes the connection.

    ``secrets`` (the first signs, any verifies) authenticate presence; ``tenants`` go
    into the :func:`~relay.core.presence.fingerprint` with ``shards`` and ``prefix``;
    ``on_refused(reason)`` is called for every presence message dropped unread."""

    def __init__(
        self,
        *,
        url: SecretStr,
        replica_id: str,
        secrets: Sequence[SecretStr],
        tenants: Collection[str] = (),
        shards: int = DEFAULT_SHARDS,
        prefix: str = "exmail.relay",
        heartbeat: int = 5,
        tick: float = 1.0,
        presence_timeout: float | None = None,
        settle: float | None = None,
        reconnect_backoff: Backoff | None = None,
        on_change: Callable[[LeaseChange], None] | None = None,
        before_release: Callable[[int, ReleaseReason], Awaitable[None]] | None = None,
        release_grace: float | None = None,
        on_refused: Callable[[str], None] | None = None,
        mismatch_grace: float = 300.0,
    ) -> None:
        if shards < 1:
            raise ValueError("shards must be at least 1")
        if heartbeat < 1:
            raise ValueError("heartbeat must be at least 1 second")
        if not 0 < tick <= heartbeat / 3:
            raise ValueError("tick must be positive and at most heartbeat / 3")
        if not valid_replica_id(replica_id):
            raise ValueError(
                f"replica id {replica_id!r} is not a DNS label (a-z, 0-9, '-', at most 63)"
            )
        keys = [s.get_secret_value().encode() for s in secrets]
        if not keys or not all(keys):
            raise ValueError("lease mode needs the deployment secret ([sharding] secret)")
        self._keys = keys
        self.replica_id = replica_id
        self.shards = shards
        self.prefix = prefix
        self.fingerprint = fingerprint(shards=shards, prefix=prefix, tenants=tenants)
        self._heartbeat = heartbeat
        self._tick = tick
        self._presence_timeout = presence_timeout if presence_timeout is not None else 3 * tick
        self._settle = settle if settle is not None else tick
        self._on_change = on_change
        # A planned release (balance, shutdown, unhealthy) awaits this gate, bounded by a
        # third of a heartbeat (the lease stays fresh): the owner stops the shard's work.
        self.before_release = before_release
        self._release_grace = release_grace if release_grace is not None else heartbeat / 3
        self.health: Callable[[], str | None] = lambda: None  # why unfit to hold shards
        self._on_refused = on_refused
        self._wake = asyncio.Event()
        self._crash: BaseException | None = None
        self._link = BrokerLink(
            url=url,
            session=self._session,
            name=f"exmail-relay leases {replica_id}",
            what="lease connection",
            heartbeat=heartbeat,
            backoff=reconnect_backoff or Backoff(base=0.2, cap=5.0),
            logger=log,
            log_extra={"replica": replica_id},
            on_lost=self._lost,
            on_down=lambda: self._drop_all("connection_lost"),
            on_stop=self._wake.set,
            on_crash=self._crashed,
        )
        self.target = self._link.target

        self._owned: set[int] = set()
        self._peers: dict[str, tuple[float, frozenset[int]]] = {}
        self._fresh = LeaseFreshness(link=self._link, heartbeat=heartbeat, on_expired=self._expired)
        self._link.block_callbacks.append(self._block_changed)
        self._late_until = 0.0  # presence held up by an alarm may come stale until then
        self._subscribers: list[asyncio.Queue[LeaseChange | None]] = []
        self.refused: dict[str, int] = {}  # presence messages dropped unread, by reason
        self._refused_log = LogThrottle(every=30.0)
        self._conflicts = ConflictBook(
            memory=max(CONFLICT_MEMORY, 3 * self._presence_timeout), grace=mismatch_grace
        )
        self._conflict_log = LogThrottle(every=30.0)

    def __repr__(self) -> str:
        owned = sorted(self._owned)
        return f"LeaseManager({self.target!r}, replica={self.replica_id!r}, owned={owned})"

    # -- what the rest of the relay reads ----------------------------------------------

    @property
    def owned(self) -> frozenset[int]:
        """The shards held now (empty while disconnected)."""
        return frozenset(self._owned)

    @property
    def live(self) -> frozenset[str]:
        """The replicas seen alive, this one included (members of our shard space only)."""
        return frozenset(self._peers) | {self.replica_id}

    @property
    def last_error(self) -> str | None:
        return next(iter(self.conflicts()), self._link.last_error)

    @property
    def link(self) -> BrokerLink:
        """The lease connection (``last_error``, ``down_since``, ``blocked``)."""
        return self._link

    @property
    def connected(self) -> bool:
        """The lease connection is up (its session set up, not lost)."""
        return self._link.connected

    def holds(self, shard: int) -> bool:
        """Whether ``shard``'s lease is held on a live, recently confirmed connection."""
        return (
            shard in self._owned
            and self._link.connected
            and self._fresh.fresh(asyncio.get_running_loop().time())
        )

    def holder_of(self, shard: int) -> str | None:
        """Who holds ``shard``, as far as *authenticated* presence of our own shard space
        tells (``None``: nobody now). For routing a request only: ownership is the
        lease's alone. Every id returned is a DNS label."""
        if self.holds(shard):
            return self.replica_id
        return next((r for r, (_, owned) in self._peers.items() if shard in owned), None)

    def lease_queue(self, shard: int) -> str:
        return f"{self.prefix}.lease.{shard}"

    def conflicts(self) -> list[str]:
        """What shares our presence exchange but not our shard space, heard lately."""
        return self._conflicts.active(time.monotonic())

    def trouble(self) -> str | None:
        """Why not ready: another deployment on our prefix, another shard count, or
        another tenant set for longer than ``mismatch_grace`` (a rollout passes)."""
        return self._conflicts.trouble(time.monotonic())

    def changes(self) -> AsyncIterator[LeaseChange]:
        """Every change from this call on, until the manager closes (or crashes: raised
        when iterated). Subscribed at the call, so ``owned`` read just before it and
        the changes after it add up."""
        queue: asyncio.Queue[LeaseChange | None] = asyncio.Queue()
        self._subscribers.append(queue)
        return self._iterate(queue)

    async def _iterate(
        self, queue: asyncio.Queue[LeaseChange | None]
    ) -> AsyncIterator[LeaseChange]:
        try:
            while (change := await queue.get()) is not None:
                yield change
            if self._crash is not None:
                raise self._crash
        finally:
            self._subscribers.remove(queue)

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> LeaseManager:
        await self._link.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self, *, grace: float = 10.0) -> None:
        """Hand every shard over, close the connection; re-raises a crash of the loop."""
        try:
            await self._link.close(grace=grace)
        finally:
            for queue in self._subscribers:
                queue.put_nowait(None)

    def _crashed(self, error: BaseException) -> None:
        self._crash = error
        self._owned = set()  # not reported: the callbacks may be what crashed
        for queue in self._subscribers:
            queue.put_nowait(None)

    # -- one session -------------------------------------------------------------------

    async def _session(self, connection: AbstractConnection) -> None:
        """One connection's life; returns after a graceful shutdown, raises when lost."""
        link = self._link
        try:
            control = await link.op(connection.channel(publisher_confirms=True))
            await link.op(
                control.declare_queue(f"{self.prefix}.member.{self.replica_id}", exclusive=True)
            )
            exchange = await link.op(
                control.declare_exchange(
                    f"{self.prefix}.presence", aio_pika.ExchangeType.FANOUT, durable=True
                )
            )
            inbox = await link.op(control.declare_queue(exclusive=True, auto_delete=True))
            await link.op(inbox.bind(exchange))
            await link.op(inbox.consume(self._on_presence, no_ack=True))
            link.up()
            loop = asyncio.get_running_loop()
            started = loop.time()
            while not link.stopping:
                self._wake.clear()  # a wake-up during this round means: one more round now
                link.check()
                unfit = self.health()  # unfit: every shard goes, none is taken, not a member
                if unfit is not None and self._owned:
                    await self._release(control, sorted(self._owned), "unhealthy")
                await self._publish(exchange, leaving=unfit is not None)
                self._expire_peers()
                if unfit is None and loop.time() - started >= self._settle:
                    await self._rebalance(connection, control)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._tick)
            await self._hand_over(control, exchange)
        finally:
            self._fresh.stop()

    async def _rebalance(self, connection: AbstractConnection, control: AbstractChannel) -> None:
        known = {s: peer for peer, (_, owned) in self._peers.items() for s in owned}
        p = plan(
            me=self.replica_id, live=self.live, held=self._owned, shards=self.shards, known=known
        )
        if p.release:
            await self._release(control, p.release, "balance")
            self._wake.set()  # tell the others at once (presence), not a tick later
        taken, loop = 0, asyncio.get_running_loop()
        for shard in p.acquire:
            if taken >= p.room or self._link.stopping:
                break
            if loop.time() > self._fresh.until - self._heartbeat / 2:
                self._wake.set()  # presence first (a round now, not a tick later), then more
                break
            self._link.check()
            if await self._try_acquire(connection, shard):
                taken += 1

    async def _try_acquire(self, connection: AbstractConnection, shard: int) -> bool:
        """Declare the lease queue; False when another connection holds it."""
        link = self._link
        # One channel per attempt: RESOURCE_LOCKED closes the channel it came on.
        channel = await link.op(connection.channel(publisher_confirms=False))
        try:
            await link.op(channel.declare_queue(self.lease_queue(shard), exclusive=True))
        except aiormq.exceptions.ChannelLockedResource:
            return False
        finally:
            if not channel.is_closed:
                with contextlib.suppress(*_LINK_ERRORS):
                    await link.op(channel.close())
        link.check()
        self._owned.add(shard)
        self._emit(LeaseChange(shard, "acquired"))
        log.info("lease acquired", extra={"replica": self.replica_id, "shard": shard})
        return True

    async def _release(
        self, control: AbstractChannel, shards: Sequence[int], reason: ReleaseReason
    ) -> None:
        # Reported first: this replica never claims a shard whose queue is already gone.
        for shard in shards:
            self._owned.discard(shard)
            self._emit(LeaseChange(shard, "released", reason))
            log.info(
                "lease released",
                extra={"replica": self.replica_id, "shard": shard, "reason": reason},
            )
        gate = self.before_release
        if gate is not None:
            # The holder's work for these shards ends before anybody else may start it.
            waits = asyncio.gather(*(gate(shard, reason) for shard in shards))
            try:
                await asyncio.wait_for(waits, self._release_grace)
            except TimeoutError:
                log.warning(
                    "release gate ran out of time; releasing anyway",
                    extra={"replica": self.replica_id, "shards": list(shards)},
                )
        for shard in shards:
            await self._link.op(control.queue_delete(self.lease_queue(shard)))

    async def _hand_over(self, control: AbstractChannel, exchange: AbstractExchange) -> None:
        """Shutdown: give every shard back and say goodbye, so others need not time us out."""
        with contextlib.suppress(*_LINK_ERRORS, LinkLost):
            if self._owned:
                await self._release(control, sorted(self._owned), "shutdown")
            await self._publish(exchange, leaving=True)

    # -- presence ----------------------------------------------------------------------

    async def _publish(self, exchange: AbstractExchange, *, leaving: bool) -> None:
        body, auth = encode_presence(
            replica=self.replica_id,
            shards=self.shards,
            owned=self._owned,
            leaving=leaving,
            fingerprint=self.fingerprint,
            secret=self._keys[0],
            now_ms=int(time.time() * 1000),
        )
        message = aio_pika.Message(
            body,
            content_type="application/json",
            expiration=self._presence_timeout,
            headers={HEADER: auth},
        )
        loop = asyncio.get_running_loop()
        sent = loop.time()
        await self._link.op(exchange.publish(message, routing_key=""))
        # Confirmed: the broker heard from this connection at ``sent`` or later, so it
        # cannot free our queues before ``sent + heartbeat``.
        self._fresh.confirmed(sent)

    async def _on_presence(self, message: AbstractIncomingMessage) -> None:
        read = read_presence(
            message.body,
            (message.headers or {}).get(HEADER),
            secrets=self._keys,
            now_ms=int(time.time() * 1000),
            max_age_ms=int((self._presence_timeout + PRESENCE_SKEW) * 1000),
        )
        if isinstance(read, Refused):
            if read.reason != "stale" or asyncio.get_running_loop().time() > self._late_until:
                self._refuse(read.reason)
            return
        if read.replica == self.replica_id:
            return
        conflict = mismatch(read, shards=self.shards, fingerprint=self.fingerprint)
        if conflict is not None:
            # Not our shard space: the locks cannot help. Loud, and left out of the share.
            self._peers.pop(read.replica, None)
            self._conflict(f"peer:{read.replica}", *conflict)
            return
        self._conflicts.clear(f"peer:{read.replica}")
        if read.leaving:
            self._peers.pop(read.replica, None)
        else:
            before = self._peers.get(read.replica)
            self._peers[read.replica] = (asyncio.get_running_loop().time(), read.owned)
            if before is not None and not before[1] - read.owned:
                return  # nobody new, no shard freed
        # A replica came or went, or freed a shard: answer with our presence, replan now.
        self._wake.set()

    def _refuse(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        if self._on_refused is not None:
            self._on_refused(reason)
        if reason == "bad signature":
            # Signed, but not with our secret: another deployment (or a secret not rolled
            # out here) on our prefix. Same lease names: sharing them would starve both.
            self._conflict("foreign", foreign_deployment(self.prefix), True)
        suppressed = self._refused_log.admit(time.monotonic())
        if suppressed is not None:
            log.warning(
                "presence message refused",
                extra={"replica": self.replica_id, "reason": reason, "suppressed": suppressed},
            )

    def _conflict(self, key: str, what: str, immediate: bool) -> None:
        now = time.monotonic()
        if self._conflicts.note(key, what, immediate=immediate, now=now):
            self._conflict_log.reset()
        if self._conflict_log.admit(now) is not None:
            log.error(what, extra={"replica": self.replica_id})

    def _expire_peers(self) -> None:
        deadline = asyncio.get_running_loop().time() - self._presence_timeout
        for replica, (seen, _) in list(self._peers.items()):
            if seen < deadline:
                del self._peers[replica]

    # -- losing the link ---------------------------------------------------------------

    def _expired(self) -> None:
        why = "blocked and silent" if self._link.blocked else "unconfirmed"
        why = f"lease connection {why} for a heartbeat"
        if self._owned:
            log.warning(f"{why}; leases given up", extra={"replica": self.replica_id})
        self._link.lose(why)

    def _block_changed(self, reason: str | None) -> None:
        """A block holds every presence alike: unblocked, peers get their timeout again."""
        if reason is not None or not self._link.connected:  # blocked, or the session ended
            self._late_until = float("inf") if reason else 0.0
            return
        self._late_until = (now := asyncio.get_running_loop().time()) + self._presence_timeout
        self._peers = {peer: (now, owned) for peer, (_, owned) in self._peers.items()}

    def _lost(self) -> None:
        """The link's ``on_lost`` (a close callback, the freshness timer): every lease
        gone at once; a failing ``on_change`` is raised by the session's check."""
        self._wake.set()
        self._drop_all("connection_lost")

    def _drop_all(self, reason: ReleaseReason) -> None:
        dropped, self._owned = sorted(self._owned), set()
        for shard in dropped:
            self._emit(LeaseChange(shard, "released", reason))
        if dropped:
            log.warning(
                "leases lost",
                extra={"replica": self.replica_id, "shards": dropped, "reason": reason},
            )

    # -- small things ------------------------------------------------------------------

    def _emit(self, change: LeaseChange) -> None:
        if self._on_change is not None:
            self._on_change(change)
        for queue in self._subscribers:
            queue.put_nowait(change)
