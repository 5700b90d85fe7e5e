"""Shard leases held on RabbitMQ: which shards this replica owns, right now.

Where it sits: :class:`relay.runtime.ownership.ShardRunner` follows a :class:`LeaseManager`
and starts or stops the shards' tenants as leases come and go. The decisions are the pure
planner's (:func:`relay.core.shards.plan`); this module only moves the bytes.

Ownership rests on the broker's locks alone. The lease of shard ``n`` is the exclusive
queue ``<prefix>.lease.<n>``: exclusive queues belong to the connection that declared
them, a second connection declaring one gets ``RESOURCE_LOCKED`` (405, its channel
closed), and the broker deletes them when the connection closes or misses heartbeats.
So this replica holds a shard exactly while its one connection holds that queue.

Presence only sizes the share. Every tick the manager publishes ``{replica, owned}`` on
the fanout exchange ``<prefix>.presence`` and reads the others' through its own
exclusive, auto-delete inbox; a replica not heard from for ``presence_timeout`` counts
as gone. Presence that is late or wrong makes a replica want too many or too few
shards, never hold one that another holds. The member queue ``<prefix>.member.<id>``
locks the replica id, so two processes with one id cannot both run, and a replica that
reconnects waits until the broker has dropped its previous connection (and with it the
old leases) before taking anything.

The client must stop believing before the broker stops enforcing. aiormq only notices a
silent broker after ``3 * (heartbeat + 1)`` seconds, later than the broker frees the
leases (at least ``heartbeat`` seconds of silence), so the manager keeps its own
clock: each tick's presence is published with a publisher confirm, a round trip, and
every lease counts as held only until ``heartbeat`` seconds after the last confirmed
publish was *sent* (the broker heard from us no earlier than that). Past that, every
shard is reported released (``connection_lost``) and the connection is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

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
from relay.core.redact import redact_url, scrub
from relay.core.shards import DEFAULT_SHARDS, LeaseChange, ReleaseReason, plan
from relay.sinks.connect import LINK_ERRORS as _LINK_ERRORS
from relay.sinks.connect import open_connection

__all__ = ["LeaseManager"]

log = logging.getLogger("relay.runtime.leases")

T = TypeVar("T")


class _LinkLost(Exception):
    """The connection closed, or went unconfirmed for longer than a heartbeat."""


class LeaseManager:
    """Holds this replica's fair share of shard leases. Use as an async context manager.

    ``on_change`` is called, in order, for every lease taken or given up; so are the
    iterators of :meth:`changes`. A lost connection reports every shard released at
    once (``connection_lost``) and reconnects with capped, jittered backoff, starting
    from no shard. Leaving the block (or :meth:`close`) hands every shard over
    (``shutdown``) and closes the connection. While ``health()`` names a reason (unfit:
    a full journal, no delivery link), every shard goes (``unhealthy``, through the
    gate), none is taken, and presence says ``leaving``, so the others take them.
    """

    def __init__(
        self,
        *,
        url: SecretStr,
        replica_id: str,
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
    ) -> None:
        if shards < 1:
            raise ValueError("shards must be at least 1")
        if heartbeat < 1:
            raise ValueError("heartbeat must be at least 1 second")
        if not 0 < tick <= heartbeat / 3:
            raise ValueError("tick must be positive and at most heartbeat / 3")
        self._url = url
        self.replica_id = replica_id
        self.shards = shards
        self.prefix = prefix
        self._heartbeat = heartbeat
        self._tick = tick
        self._presence_timeout = presence_timeout if presence_timeout is not None else 3 * tick
        self._settle = settle if settle is not None else tick
        self._backoff = reconnect_backoff or Backoff(base=0.2, cap=5.0)
        self._on_change = on_change
        # A planned release (balance, shutdown) awaits this gate, bounded, between the
        # report and the queue delete: the owner stops that shard's work first. Within a
        # third of a heartbeat the lease stays fresh (the last confirm is a tick old).
        self.before_release = before_release
        self._release_grace = release_grace if release_grace is not None else heartbeat / 3
        self.health: Callable[[], str | None] | None = None  # why unfit to own shards
        self.unhealthy: str | None = None
        self.target = redact_url(url.get_secret_value(), keep_user=True)

        self._owned: set[int] = set()
        self._peers: dict[str, tuple[float, frozenset[int]]] = {}
        self._connection: AbstractConnection | None = None
        self._fresh_until = 0.0
        self._expiry: asyncio.TimerHandle | None = None
        self._lost = asyncio.Event()
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session_up = False
        # Monotonic time since which no session is up (None: one is); readiness bounds it.
        self.down_since: float | None = time.monotonic()
        self._deferred: Exception | None = None
        self._subscribers: list[asyncio.Queue[LeaseChange | None]] = []
        self.last_error: str | None = None

    def __repr__(self) -> str:
        return (
            f"LeaseManager({self.target!r}, replica={self.replica_id!r}, "
            f"owned={sorted(self._owned)})"
        )

    # -- what the rest of the relay reads ----------------------------------------------

    @property
    def owned(self) -> frozenset[int]:
        """The shards held now (empty while disconnected)."""
        return frozenset(self._owned)

    @property
    def live(self) -> frozenset[str]:
        """The replicas seen alive, this one included."""
        return frozenset(self._peers) | {self.replica_id}

    def holds(self, shard: int) -> bool:
        """Whether ``shard``'s lease is held on a live, recently confirmed connection."""
        connection = self._connection
        return (
            shard in self._owned
            and connection is not None
            and not connection.is_closed
            and asyncio.get_running_loop().time() < self._fresh_until
        )

    def holder_of(self, shard: int) -> str | None:
        """Who holds ``shard``, as far as presence tells (``None``: nobody now). For
        routing a request only: ownership is the lease's alone."""
        if self.holds(shard):
            return self.replica_id
        return next((r for r, (_, owned) in self._peers.items() if shard in owned), None)

    def lease_queue(self, shard: int) -> str:
        return f"{self.prefix}.lease.{shard}"

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
            task = self._task
            if task is not None and task.done() and not task.cancelled():
                error = task.exception()
                if error is not None:
                    raise error
        finally:
            self._subscribers.remove(queue)

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> LeaseManager:
        self._task = asyncio.create_task(self._run(), name=f"leases-{self.replica_id}")
        self._task.add_done_callback(self._task_done)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self, *, grace: float = 10.0) -> None:
        """Hand every shard over, close the connection; re-raises a crash of the loop."""
        task = self._task
        if task is None:
            return
        self._stop.set()
        self._wake.set()
        done, _ = await asyncio.wait([task], timeout=grace)
        if not done:
            task.cancel()
            await asyncio.wait([task])
        for queue in self._subscribers:
            queue.put_nowait(None)
        error = None if task.cancelled() else task.exception()
        if error is not None:
            raise error

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        error = task.exception()
        self.last_error = f"internal error: {type(error).__name__}"
        self._owned = set()  # not reported: the callbacks may be what crashed
        log.error("lease manager crashed", exc_info=error, extra={"replica": self.replica_id})
        for queue in self._subscribers:
            queue.put_nowait(None)

    # -- the loop ----------------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            self._lost.clear()
            try:
                name = f"exmail-relay leases {self.replica_id}"
                url, beat = self._url.get_secret_value(), self._heartbeat
                connection = await open_connection(url, within=10, heartbeat=beat, name=name)
            except _LINK_ERRORS as exc:
                self._note_error(f"cannot connect to {self.target}", exc, attempt)
                attempt += 1
                await self._pause(self._backoff.delay(attempt))
                continue
            self._connection = connection
            self._session_up = False
            connection.close_callbacks.add(self._connection_closed)
            try:
                await self._session(connection)
            except (*_LINK_ERRORS, _LinkLost) as exc:
                self._note_error("lease connection lost", exc, attempt)
            finally:
                if self._expiry is not None:
                    self._expiry.cancel()
                self._connection = None
                if self.down_since is None:
                    self.down_since = time.monotonic()
                # Closed first, whatever ended the session (a bug included): the broker
                # then frees every lease this connection still holds.
                try:
                    with contextlib.suppress(*_LINK_ERRORS):
                        await asyncio.wait_for(connection.close(), timeout=5)
                finally:
                    self._drop_all("connection_lost")
            # A session that got going resets the backoff; one refused at setup (our
            # previous connection still holds the member queue) does not.
            attempt = 0 if self._session_up else attempt + 1
            if not self._stop.is_set():
                await self._pause(self._backoff.delay(attempt))

    async def _session(self, connection: AbstractConnection) -> None:
        """One connection's life; returns after a graceful shutdown, raises when lost."""
        control = await self._op(connection.channel(publisher_confirms=True))
        await self._op(
            control.declare_queue(f"{self.prefix}.member.{self.replica_id}", exclusive=True)
        )
        exchange = await self._op(
            control.declare_exchange(
                f"{self.prefix}.presence", aio_pika.ExchangeType.FANOUT, durable=True
            )
        )
        inbox = await self._op(control.declare_queue(exclusive=True, auto_delete=True))
        await self._op(inbox.bind(exchange))
        await self._op(inbox.consume(self._on_presence, no_ack=True))
        self.last_error = None
        self._session_up = True
        self.down_since = None
        log.info("lease connection up", extra={"replica": self.replica_id, "target": self.target})
        loop = asyncio.get_running_loop()
        started = loop.time()
        while not self._stop.is_set():
            self._wake.clear()  # a wake-up during this round means: one more round now
            self._check(connection)
            self.unhealthy = self.health() if self.health is not None else None
            if self.unhealthy is not None and self._owned:  # unfit: every shard goes
                await self._release(control, sorted(self._owned), "unhealthy")
            await self._publish(exchange, leaving=self.unhealthy is not None)
            self._expire_peers()
            if self.unhealthy is None and loop.time() - started >= self._settle:
                await self._rebalance(connection, control)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._tick)
        await self._hand_over(control, exchange)

    async def _rebalance(self, connection: AbstractConnection, control: AbstractChannel) -> None:
        known = {s: peer for peer, (_, owned) in self._peers.items() for s in owned}
        p = plan(
            me=self.replica_id, live=self.live, held=self._owned, shards=self.shards, known=known
        )
        if p.release:
            await self._release(control, p.release, "balance")
            self._wake.set()  # tell the others at once (presence), not a tick later
        taken = 0
        for shard in p.acquire:
            if taken >= p.room or self._stop.is_set():
                break
            self._check(connection)
            if await self._try_acquire(connection, shard):
                taken += 1

    async def _try_acquire(self, connection: AbstractConnection, shard: int) -> bool:
        """Declare the lease queue; False when another connection holds it."""
        # One channel per attempt: RESOURCE_LOCKED closes the channel it came on.
        channel = await self._op(connection.channel(publisher_confirms=False))
        try:
            await self._op(channel.declare_queue(self.lease_queue(shard), exclusive=True))
        except aiormq.exceptions.ChannelLockedResource:
            return False
        finally:
            if not channel.is_closed:
                with contextlib.suppress(*_LINK_ERRORS):
                    await self._op(channel.close())
        self._check(connection)
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
            await self._op(control.queue_delete(self.lease_queue(shard)))

    async def _hand_over(self, control: AbstractChannel, exchange: AbstractExchange) -> None:
        """Shutdown: give every shard back and say goodbye, so others need not time us out."""
        with contextlib.suppress(*_LINK_ERRORS, _LinkLost):
            if self._owned:
                await self._release(control, sorted(self._owned), "shutdown")
            await self._publish(exchange, leaving=True)

    # -- presence ----------------------------------------------------------------------

    async def _publish(self, exchange: AbstractExchange, *, leaving: bool) -> None:
        body = {
            "replica": self.replica_id,
            "shards": self.shards,
            "owned": sorted(self._owned),
            "leaving": leaving,
        }
        message = aio_pika.Message(
            json.dumps(body).encode(),
            content_type="application/json",
            expiration=self._presence_timeout,
        )
        loop = asyncio.get_running_loop()
        sent = loop.time()
        await self._op(exchange.publish(message, routing_key=""))
        # Confirmed: the broker heard from this connection at ``sent`` or later, so it
        # cannot free our queues before ``sent + heartbeat``.
        self._fresh_until = sent + self._heartbeat
        if self._expiry is not None:
            self._expiry.cancel()
        self._expiry = loop.call_at(self._fresh_until, self._expired)

    async def _on_presence(self, message: AbstractIncomingMessage) -> None:
        try:
            body: Any = json.loads(message.body)
            replica = body["replica"]
            shards = int(body["shards"])
            owned = frozenset(int(s) for s in body["owned"])
            leaving = bool(body["leaving"])
        except (ValueError, KeyError, TypeError):
            log.debug("malformed presence message ignored")
            return
        if not isinstance(replica, str) or replica == self.replica_id:
            return
        if shards != self.shards:
            # Lease n would mean other tenants over there: the locks cannot help. Loud,
            # and that replica is left out of the share (it is not in our shard space).
            self.last_error = (
                f"replica {replica!r} runs {shards} shards, this one {self.shards}: "
                "the sharding configuration must be the same everywhere"
            )
            log.error(self.last_error, extra={"replica": self.replica_id})
            return
        if leaving:  # a goodbye, or a replica unfit to own shards (said every tick)
            if self._peers.pop(replica, None) is None:
                return  # not counted already: nothing changes
        else:
            before = self._peers.get(replica)
            self._peers[replica] = (asyncio.get_running_loop().time(), owned)
            if before is not None and not before[1] - owned:
                return  # nobody new, no shard freed
        # A replica came or went, or freed a shard: answer with our presence, replan now.
        self._wake.set()

    def _expire_peers(self) -> None:
        deadline = asyncio.get_running_loop().time() - self._presence_timeout
        for replica, (seen, _) in list(self._peers.items()):
            if seen < deadline:
                del self._peers[replica]

    # -- losing the link ---------------------------------------------------------------

    def _connection_closed(self, sender: object, _exc: BaseException | None = None) -> None:
        if sender is not self._connection:
            return  # an earlier connection, closed by us and reported already
        self._lose()

    def _expired(self) -> None:
        if asyncio.get_running_loop().time() >= self._fresh_until and self._owned:
            log.warning(
                "lease connection unconfirmed for a heartbeat; leases given up",
                extra={"replica": self.replica_id},
            )
        self._lose()

    def _lose(self) -> None:
        """Every lease gone at once. Runs in a callback (aio-pika's, or a timer), where
        an exception would only be logged, so a failing ``on_change`` is kept and raised
        by the loop instead."""
        try:
            self._drop_all("connection_lost")
        except Exception as exc:  # noqa: BLE001 - re-raised by _check, in the loop
            self._deferred = exc
        self._lost.set()
        self._wake.set()

    def _check(self, connection: AbstractConnection) -> None:
        if self._deferred is not None:
            raise self._deferred
        if self._lost.is_set() or connection.is_closed:
            raise _LinkLost("the lease connection is gone")

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

    async def _op(self, awaitable: Awaitable[T]) -> T:
        """One broker operation, bounded: a silent broker must not hang the loop."""
        return await asyncio.wait_for(awaitable, timeout=self._heartbeat)

    def _emit(self, change: LeaseChange) -> None:
        if self._on_change is not None:
            self._on_change(change)
        for queue in self._subscribers:
            queue.put_nowait(change)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    def _note_error(self, what: str, exc: BaseException, attempt: int) -> None:
        detail = scrub(str(exc) or type(exc).__name__, [self._url.get_secret_value()])[:200]
        self.last_error = f"{what}: {detail}"
        if attempt % 10 == 0:
            log.warning(self.last_error, extra={"replica": self.replica_id})
