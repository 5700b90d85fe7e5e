"""Checkpoints that follow the shard, with no time window: a few signed snapshots of
each shard's newest Vers, kept on the broker for as long as the deployment exists.

Where it sits: in lease mode a shard's tenants move between replicas. The listener
hands every Ver it commits to its :class:`relay.runtime.checkpointing.CheckpointPublisher`
(this store); the next owner of a shard calls :meth:`CheckpointStore.latest` before its
tenants' first ``listen`` and resumes from the newer of that and its own journal's
checkpoint (:class:`relay.runtime.ownership.ShardRunner`).

Where the Vers live: one durable classic queue per shard, ``<prefix>.checkpoint.<n>``,
``x-max-length`` 8 with ``x-overflow: drop-head``. Each message is a snapshot of the
*whole* shard's Vers (every tenant of the shard this replica knows), signed with the
deployment secret (kind ``checkpoint``, :mod:`relay.core.envelope`), persistent. The
broker keeps the newest 8 snapshots of each shard and nothing else, with no age limit,
so the newest Ver of every tenant stays readable however long every replica was down.
A reader takes the largest Ver per tenant over all kept snapshots: Vers only grow, so
a late snapshot of an old owner cannot take a tenant backwards while a newer one is
kept. docs/leases.md says why this store and not the others.

Publishing never blocks and never raises: :meth:`CheckpointStore.publish` records the
Ver in a :class:`relay.core.checkpoints.CheckpointBook`; the one sender task sends, at
most once per ``linger``, one snapshot per shard with something owed, with publisher
confirms, ``mandatory``: a snapshot the broker returns (the shard's queue deleted since
this connection declared it) declares the queue again and goes again
(:func:`relay.runtime.keptqueues.publish_kept`); one that keeps coming back fails the
session like a lost confirm, and stays owed. A shard is published when a tenant of it
commits here (so an old owner that lost a shard sends at most what it committed before
its listeners were fenced: one or two snapshots, fewer than are kept) and, at once,
after a complete read: the new owner's merged snapshot, so the kept snapshots hold the
newest Vers known. (Publishing only "while the lease is held" would lose a handed-over
shard's last commit: the lease manager counts a shard as released before the handoff
gate's flush.)

Reading: :meth:`CheckpointStore.latest` takes every message of the shard's queue with
``basic.get`` (no ack) until the queue says empty, then hands them all back
(``nack``, requeue). Messages that are unsigned or signed with another secret are
dropped from the merge and counted (``refused``, metric, status), malformed ones too
(``malformed``). A read that fails or does not finish within its bound raises
:class:`relay.runtime.checkpointing.CheckpointUnavailable`: the caller waits and tries
again; "nothing found" is an answer only after a complete read.

The connection is a :class:`relay.sinks.brokerlink.BrokerLink`, the one reconnecting
link the lease manager and the AMQP sink run on too (connect, reconnect with capped
backoff, throttled logs, ``connected``/``last_error``); the store only says what a
session does. A read that times out on a link that looks open gives the link up
(``lose``), so the next try gets a new connection instead of waiting for the client
library's heartbeat check, which may never notice a silent path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractQueue
from pydantic import SecretStr

from relay.core.backoff import Backoff
from relay.core.checkpoints import (
    KIND,
    CheckpointBook,
    Malformed,
    encode,
    merge,
    open_message,
)
from relay.core.envelope import Refused
from relay.core.shards import shard_of
from relay.runtime.checkpointing import CheckpointUnavailable
from relay.runtime.keptqueues import (
    bounded_read,
    deployment_keys,
    kept_arguments,
    note_dropped,
    publish_kept,
    read_kept,
    signed_message,
)
from relay.runtime.observer import Observer
from relay.sinks.brokerlink import BrokerLink

__all__ = ["KEEP", "CheckpointStore"]

log = logging.getLogger("relay.runtime.checkpoints")


CONTENT_TYPE = "application/json"
#: Snapshots kept per shard. More than one, so a few late snapshots of an old owner
#: cannot push the new owner's out; few, so a read stays a handful of messages.
KEEP = 8
# A queue holding more than this (messages unacked by a reader come back on top of
# KEEP) is not ours to trust as complete: the read fails and is tried again.
MAX_READ = 1000


class CheckpointStore:
    """Publishes committed Vers as signed shard snapshots; reads a shard's newest.

    Use as an async context manager: it owns its connection and its sender task.
    Leaving the block sends what is owed (up to ``close_timeout`` seconds), then closes.
    """

    def __init__(
        self,
        *,
        url: SecretStr,
        secrets: Sequence[SecretStr],
        shards: int,
        prefix: str = "exmail.relay",
        linger: float = 0.1,
        heartbeat: int = 5,
        confirm_timeout: float = 10.0,
        read_timeout: float = 10.0,
        close_timeout: float = 5.0,
        reconnect_backoff: Backoff | None = None,
        log_every: float = 30.0,
        observer: Observer | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = deployment_keys(secrets, "checkpoints")
        self.shards = shards
        self.prefix = prefix
        self._linger = linger
        self._confirm_timeout = confirm_timeout
        self._read_timeout = read_timeout
        self._close_timeout = close_timeout
        self._observer = observer or Observer()
        self._clock = clock
        self._arguments = kept_arguments(KEEP)
        self._wake = asyncio.Event()  # a publish, a lost link or the stop: the sender looks
        self._link = BrokerLink(
            url=url,
            session=self._session,
            name="exmail-relay checkpoints",
            what="checkpoint connection",
            heartbeat=heartbeat,
            op_timeout=confirm_timeout,
            backoff=reconnect_backoff or Backoff(base=0.2, cap=5.0),
            log_every=log_every,
            logger=log,
            on_lost=self._lost,
            on_down=self._down,
            on_stop=self._wake.set,
        )
        self.target = self._link.target
        self._book = CheckpointBook()
        self._forced: set[int] = set()  # shards whose merged snapshot goes out next
        self._settled = asyncio.Event()  # set while nothing is owed
        self._settled.set()
        self._started = False
        self.published = 0  # snapshots confirmed by the broker
        self.refused = 0  # messages dropped: unsigned or not signed by this deployment
        self.malformed = 0  # signed messages that are not a snapshot of their shard
        self.last_refused: str | None = None

    def __repr__(self) -> str:
        return f"CheckpointStore({self.target!r}, prefix={self.prefix!r})"

    def queue_of(self, shard: int) -> str:
        return f"{self.prefix}.checkpoint.{shard}"

    # -- what the rest of the relay reads ----------------------------------------------

    @property
    def link(self) -> BrokerLink:
        """The store's connection, shared with the api2 listing snapshots
        (:class:`relay.runtime.listings.ListingStore`)."""
        return self._link

    @property
    def connected(self) -> bool:
        return self._link.connected

    @property
    def last_error(self) -> str | None:
        return self._link.last_error

    @property
    def down_since(self) -> float | None:
        """Monotonic time since which the link is down (None: up)."""
        return self._link.down_since

    @property
    def block_status(self) -> dict[str, str | float] | None:
        """While a resource alarm blocks the link: its reason and since when."""
        return self._link.block_status

    @property
    def owed(self) -> int:
        """Tenants whose newest Ver the broker has not confirmed yet."""
        return self._book.owed

    # -- CheckpointPublisher and CheckpointSource --------------------------------------

    def publish(self, tenant: str, ver: int) -> None:
        """Owe ``ver`` for ``tenant``; the sender task sends its shard. Never blocks."""
        if self._book.offer(tenant, ver):
            self._settled.clear()
            self._wake.set()

    async def flush(self, timeout: float) -> bool:  # noqa: ASYNC109 - the agreed protocol
        """Wait until every Ver published so far is confirmed; False after ``timeout``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._settled.wait(), timeout)
        return self._book.idle and not self._forced

    async def latest(
        self,
        shard: int,
        tenants: Sequence[str],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the agreed protocol
    ) -> dict[str, int]:
        """The newest Ver kept for each of ``tenants`` of ``shard`` (absent: none kept).

        Raises :class:`CheckpointUnavailable` when the broker is away, the read fails
        or does not finish within ``timeout`` (default ``read_timeout``): never a
        partial answer.
        """
        bound = self._read_timeout if timeout is None else timeout
        found = await bounded_read(
            self._link,
            lambda connection: self._read(connection, shard),
            bound=bound,
            what=f"the checkpoints of shard {shard}",
            unavailable=CheckpointUnavailable,
        )
        self._book.learn(found)
        # The new owner's merged snapshot goes out at once: the kept snapshots then hold
        # the newest Vers however many stale ones an old owner sends late.
        self._forced.add(shard)
        self._settled.clear()
        self._wake.set()
        wanted = set(tenants)
        return {t: v for t, v in found.items() if t in wanted}

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> CheckpointStore:
        self._observer.checkpoint_store(False)
        await self._link.__aenter__()
        self._started = True
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Send what is owed (up to ``close_timeout``), stop the sender, close the link;
        re-raises a crash of the sender (the link logged it and showed it at once)."""
        if not self._started:
            return
        self._started = False
        if self._link.connected and not await self.flush(self._close_timeout):
            log.warning("checkpoints not confirmed at close", extra={"owed": self._book.owed})
        await self._link.close(grace=self._close_timeout)

    def _lost(self) -> None:
        self._observer.checkpoint_store(False)
        self._wake.set()  # the sender's wait ends; its check() raises LinkLost

    def _down(self) -> None:
        self._observer.checkpoint_store(False)

    # -- the sender --------------------------------------------------------------------

    async def _session(self, connection: AbstractConnection) -> None:
        channel = await self._link.op(
            connection.channel(publisher_confirms=True, on_return_raises=True)
        )
        # Closed by the broker while idle, it would pass for up until the next send.
        self._link.watch(channel, "the checkpoint channel")
        declared: set[int] = set()
        self._link.up()
        self._observer.checkpoint_store(True)
        try:
            while not self._link.stopping:
                self._link.check()  # LinkLost once closed or given up
                self._wake.clear()
                batch = self._book.take()
                shards = {shard_of(t, self.shards) for t in batch} | self._forced
                forced, self._forced = self._forced, set()
                try:
                    sent = await self._send(channel, shards, declared)
                except BaseException:
                    self._forced |= forced
                    raise
                self._book.confirmed()
                if self._book.idle and not self._forced:
                    self._settled.set()
                if sent:
                    # What arrives meanwhile goes out together: at most one snapshot
                    # per shard per ``linger``.
                    await self._link.pause(self._linger)
                    continue
                # Woken by a publish, a lost link or the stop; a look at the link now
                # and then in case a close went unnoticed.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 5.0)
        finally:
            self._book.failed()  # a batch without its confirm is owed again

    async def _send(self, channel: AbstractChannel, shards: set[int], declared: set[int]) -> int:
        """One signed snapshot per shard, published and confirmed, or an error."""
        by_shard: dict[int, dict[str, int]] = {s: {} for s in shards}
        for tenant, ver in self._book.known.items():
            entry = by_shard.get(shard_of(tenant, self.shards))
            if entry is not None:
                entry[tenant] = ver
        publishes = []
        for shard, vers in sorted(by_shard.items()):
            if not vers:
                continue
            if shard not in declared:
                await self._link.op(self._declare(channel, shard))
                declared.add(shard)
            body = encode(shard, vers)
            at_ms = int(self._clock() * 1000)
            message = signed_message(
                KIND, body, content_type=CONTENT_TYPE, key=self._keys[0], at_ms=at_ms
            )
            publishes.append(self._publish_to(channel, shard, message, declared))
        # Each bounded on its own; all finish before a failure ends the session.
        for result in await asyncio.gather(*publishes, return_exceptions=True):
            if isinstance(result, BaseException):
                raise result
        self.published += len(publishes)
        return len(publishes)

    async def _publish_to(
        self, channel: AbstractChannel, shard: int, message: aio_pika.Message, declared: set[int]
    ) -> None:
        """``message`` in ``shard``'s queue; declared again if someone deleted it since
        this session declared it (the broker would confirm and drop the snapshot)."""

        async def declare_again() -> None:
            declared.discard(shard)
            await self._declare(channel, shard)
            declared.add(shard)

        await publish_kept(
            self._link,
            channel,
            message,
            queue=self.queue_of(shard),
            declare_again=declare_again,
            logger=log,
        )

    # -- the reader --------------------------------------------------------------------

    async def _read(self, connection: AbstractConnection, shard: int) -> dict[str, int]:
        """Every kept snapshot of ``shard``, merged; each handed back to the queue."""
        found: dict[str, int] = {}
        refused: list[str] = []
        kept = await read_kept(
            self._link,
            connection,
            lambda channel: self._declare(channel, shard),
            limit=MAX_READ,
            get_timeout=self._confirm_timeout,
        )
        for message in kept:
            opened = open_message(message.body, message.header, shard=shard, secrets=self._keys)
            if isinstance(opened, Refused):
                self.refused += 1
                refused.append(opened.reason)
            elif isinstance(opened, Malformed):
                self.malformed += 1
                refused.append(f"not a snapshot: {opened.reason}")
            else:
                merge(
                    found,
                    {t: v for t, v in opened.vers.items() if shard_of(t, self.shards) == shard},
                )
        if refused:
            self._refused(shard, refused)
        return found

    def _refused(self, shard: int, reasons: list[str]) -> None:
        """Counted and shown, one log line per read however many there were."""
        self.last_refused = note_dropped(
            self._observer,
            log,
            KIND,
            where=f"shard {shard}",
            message="checkpoint messages dropped",
            extra={"shard": shard},
            reasons=reasons,
        )

    # -- small things ------------------------------------------------------------------

    async def _declare(self, channel: AbstractChannel, shard: int) -> AbstractQueue:
        return await channel.declare_queue(
            self.queue_of(shard), durable=True, arguments=self._arguments
        )
