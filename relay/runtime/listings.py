"""api2 listings that follow the shard: each tenant's last committed directory listing,
signed and packed, kept on the broker for the next owner of its shard.

Where it sits: the second API has no change feed, so a poller diffs each listing
against the last one it stored (:mod:`relay.runtime.directory2`). In lease mode that
stored listing lives in the owner's journal, and a new owner with none of its own would
make a baseline and never report what changed since the old owner's last poll. So the
owner publishes its listing after every poll that changed it (:meth:`ListingStore.publish`)
and a new owner reads it back before its first poll (:meth:`ListingStore.latest`).

Where they live: one durable classic queue per tenant, ``<prefix>.listing.<tenant>``,
``x-max-length`` :data:`KEEP` with ``x-overflow: drop-head``: the broker keeps the newest
few snapshots and nothing else, with no age limit. Each message is one tenant's whole
listing (:mod:`relay.core.listing_snapshots`: zlib-packed, about 24 bytes a member,
0.24 MB for 10 000), persistent, signed with the deployment secret (kind ``listing``).
A reader keeps the newest valid snapshot by commit time; unsigned or foreign-signed
messages are dropped and counted (``refused``), signed ones that do not check out too
(``malformed``).

The store runs on the checkpoint store's :class:`relay.sinks.brokerlink.BrokerLink` (one
connection for both; a channel per read and per publish) and reads the way it does
(:mod:`relay.runtime.keptqueues`). A publish declares the tenant's queue every time and
is ``mandatory``: one the broker returns (the queue deleted right after the declare)
declares it again and goes again. A read or publish that fails or does not finish
raises :class:`ListingUnavailable`: the poller waits (a read) or owes the snapshot and
sends it after its next poll (a publish).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractQueue
from pydantic import SecretStr

from relay.core.envelope import Refused
from relay.core.listing import StoredMember
from relay.core.listing_snapshots import (
    KIND,
    ListingSnapshot,
    Malformed,
    encode,
    newest,
    open_message,
)
from relay.runtime.keptqueues import (
    bounded_read,
    deployment_keys,
    kept_arguments,
    link_connection,
    note_dropped,
    publish_kept,
    read_kept,
    signed_message,
)
from relay.runtime.observer import Observer
from relay.sinks.brokerlink import BrokerLink
from relay.sinks.connect import LINK_ERRORS

__all__ = ["KEEP", "ListingCarrier", "ListingStore", "ListingUnavailable"]

log = logging.getLogger("relay.runtime.listings")

CONTENT_TYPE = "application/zlib"
#: Snapshots kept per tenant: the newest, and a few late ones of an old owner.
KEEP = 4
# More than this in a queue (unacked messages of a reader come back on top of KEEP)
# is not trusted as complete.
MAX_READ = 64


class ListingUnavailable(Exception):
    """A tenant's listing snapshots could not be read (or one not published) completely.
    The message says why (no secret, no URL)."""


class ListingCarrier(Protocol):
    """The broker's copy of the api2 listings (lease mode)."""

    async def latest(self, tenant: str) -> ListingSnapshot | None:
        """The newest snapshot kept for ``tenant`` (None: none, after a complete read).
        Raises :class:`ListingUnavailable` when the read fails or cannot finish."""
        ...

    async def publish(self, tenant: str, members: Mapping[str, StoredMember], *, at: float) -> None:
        """Keep ``members`` as ``tenant``'s listing committed at ``at`` (Unix seconds);
        returns once the broker confirmed it. Raises :class:`ListingUnavailable`."""
        ...


class ListingStore:
    """Publishes and reads api2 listing snapshots on ``link`` (owned by its caller)."""

    def __init__(
        self,
        *,
        link: BrokerLink,
        secrets: Sequence[SecretStr],
        prefix: str = "exmail.relay",
        read_timeout: float = 15.0,
        publish_timeout: float = 15.0,
        get_timeout: float = 10.0,
        observer: Observer | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = deployment_keys(secrets, "listing snapshots")
        self._link = link
        self.prefix = prefix
        self._read_timeout = read_timeout
        self._publish_timeout = publish_timeout
        self._get_timeout = get_timeout
        self._observer = observer or Observer()
        self._clock = clock
        self._arguments = kept_arguments(KEEP)
        self.published = 0  # snapshots confirmed by the broker
        self.published_bytes = 0  # size of the last one
        self.refused = 0  # unsigned or not signed by this deployment
        self.malformed = 0  # signed, but not a valid snapshot of its tenant
        self.last_refused: str | None = None

    def __repr__(self) -> str:
        return f"ListingStore({self._link.target!r}, prefix={self.prefix!r})"

    def queue_of(self, tenant: str) -> str:
        return f"{self.prefix}.listing.{tenant}"

    async def latest(self, tenant: str) -> ListingSnapshot | None:
        kept = await bounded_read(
            self._link,
            lambda connection: read_kept(
                self._link,
                connection,
                lambda channel: self._declare(channel, tenant),
                limit=MAX_READ,
                get_timeout=self._get_timeout,
            ),
            bound=self._read_timeout,
            what=f"the listing of {tenant}",
            unavailable=ListingUnavailable,
        )
        valid: list[ListingSnapshot] = []
        dropped: list[str] = []
        # Unpacking and checking is CPU (about 30 ms for 10 000 members): off the loop.
        opened_all = await asyncio.to_thread(
            lambda: [
                open_message(m.body, m.header, tenant=tenant, secrets=self._keys) for m in kept
            ]
        )
        for opened in opened_all:
            if isinstance(opened, Refused):
                self.refused += 1
                dropped.append(opened.reason)
            elif isinstance(opened, Malformed):
                self.malformed += 1
                dropped.append(f"not a snapshot: {opened.reason}")
            else:
                valid.append(opened)
        if dropped:
            self._dropped(tenant, dropped)
        return newest(valid)

    async def publish(self, tenant: str, members: Mapping[str, StoredMember], *, at: float) -> None:
        at_ms = int(at * 1000)
        # Packing 10 000 members takes a few tens of milliseconds: off the event loop.
        body = await asyncio.to_thread(encode, tenant, members, at_ms=at_ms)
        try:
            async with asyncio.timeout(self._publish_timeout):
                connection = await link_connection(self._link, self._publish_timeout)
                await self._send(connection, tenant, body, at_ms)
        except LINK_ERRORS as exc:
            self._link.note_error(f"cannot publish the listing of {tenant}", exc)
            raise ListingUnavailable(self._link.last_error or "listing publish failed") from exc
        self.published += 1
        self.published_bytes = len(body)

    async def _send(
        self, connection: AbstractConnection, tenant: str, body: bytes, at_ms: int
    ) -> None:
        channel = await self._link.op(
            connection.channel(publisher_confirms=True, on_return_raises=True)
        )
        try:
            await self._link.op(self._declare(channel, tenant))
            message = signed_message(
                KIND, body, content_type=CONTENT_TYPE, key=self._keys[0], at_ms=at_ms
            )
            # Deleted between the declare and the publish, the queue is declared again.
            await publish_kept(
                self._link,
                channel,
                message,
                queue=self.queue_of(tenant),
                declare_again=lambda: self._declare(channel, tenant),
                logger=log,
                timeout=self._publish_timeout,
            )
        finally:
            if not channel.is_closed:
                with contextlib.suppress(*LINK_ERRORS):
                    await asyncio.wait_for(channel.close(), timeout=5)

    def _dropped(self, tenant: str, reasons: list[str]) -> None:
        """Counted and shown, one log line per read however many there were."""
        self.last_refused = note_dropped(
            self._observer,
            log,
            KIND,
            where=tenant,
            message="listing snapshot messages dropped",
            extra={"tenant": tenant},
            reasons=reasons,
        )

    async def _declare(self, channel: AbstractChannel, tenant: str) -> AbstractQueue:
        return await channel.declare_queue(
            self.queue_of(tenant), durable=True, arguments=self._arguments
        )
