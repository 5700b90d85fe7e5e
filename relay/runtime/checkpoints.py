"""Checkpoints that follow the shard: every committed Ver also goes to the broker.

Where it sits: with lease mode, a shard's tenants move between replicas. The listener
reports each committed Ver through the observer seam (``TenantObserver.checkpoint``);
:class:`CheckpointObserver` hands it to a :class:`CheckpointStream`, which publishes it.
The next owner of a shard calls :meth:`CheckpointStream.latest` for the shard's tenants
before their first ``listen`` and resumes from the newer of that and its own journal's
checkpoint, so directory changes made during a takeover are reported, not skipped.

Where the Vers live: one RabbitMQ stream, ``<prefix>.checkpoints`` (``x-queue-type:
stream``, retention ``x-max-age`` 7 days). A stream keeps history and any number of
readers can read it from any point without taking messages away from each other. The
other options, and why not:

- a last-value queue per shard: RabbitMQ has no last-value queue without a plugin;
  ``x-max-length: 1`` keeps the *last published*, not the newest Ver, so an old owner
  publishing late could take a tenant backwards, and each shard's message would have
  to carry the whole shard, written by whoever published last;
- stream filtering (``x-stream-filter-value``) needs RabbitMQ 3.13; the broker here is
  3.10;
- reading the whole stream from ``first``: the cost grows with retention (and a
  segment, 500 MB by default, is only dropped whole).

So a reader starts at a timestamp, ``lookback`` seconds ago (default 2 minutes), and
every publisher re-publishes everything it knows every ``snapshot_interval`` (default
30 s) and after each reconnect. A tenant's newest Ver is then within the lookback as
long as some replica that knew it was alive in the last ``lookback - snapshot_interval``
seconds, and a read costs two minutes of stream, whatever the retention. The timestamp
is this host's clock against the broker's: they must agree within that margin (NTP). A
takeover after every replica was gone for longer than that finds nothing here, and the
local journal's checkpoint is what is left (``lookback=None`` reads from ``first``).

Publishing never blocks and never raises: :meth:`CheckpointStream.publish` records the
Ver in a :class:`relay.core.checkpoints.CheckpointBook`, which keeps only the newest
Ver per tenant, and the stream's one sender task sends what is owed, many tenants per
message, at most once per ``linger`` (0.1 s), with publisher confirms:
:meth:`CheckpointStream.flush` returning True means the broker has every Ver published
so far. While the broker is away the sender reconnects with capped, jittered backoff,
logs at most every ``log_every`` seconds, and shows ``connected`` and ``last_error``.

Reading: :meth:`CheckpointStream.latest` appends a marker to the stream (confirmed),
then consumes from ``now - lookback`` up to that marker, keeping the largest Ver per
tenant (Vers only grow). Messages that are not ours are counted (``malformed``),
logged and skipped; a read that cannot finish in time returns what it found so far.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractIncomingMessage,
    AbstractQueue,
)
from pamqp.common import FieldTable
from pydantic import SecretStr

from relay.core.backoff import Backoff
from relay.core.checkpoints import (
    CheckpointBook,
    Malformed,
    Marker,
    chunks,
    decode,
    encode,
    encode_marker,
    merge,
)
from relay.core.redact import redact_url, scrub
from relay.runtime.observer import (
    ForwardingObserver,
    ForwardingTenantObserver,
    Observer,
    TenantObserver,
)
from relay.sinks.connect import LINK_ERRORS as _LINK_ERRORS
from relay.sinks.connect import open_connection

__all__ = ["CheckpointObserver", "CheckpointStream"]

log = logging.getLogger("relay.runtime.checkpoints")

T = TypeVar("T")


CONTENT_TYPE = "application/json"


class CheckpointStream:
    """Publishes committed Vers to the broker; reads the newest per tenant.

    Use as an async context manager: it owns its connection and its sender task.
    Leaving the block sends what is owed (up to ``close_timeout`` seconds), then closes.
    """

    def __init__(
        self,
        *,
        url: SecretStr,
        prefix: str = "exmail.relay",
        max_age: str = "7D",
        lookback: float | None = 120.0,
        snapshot_interval: float = 30.0,
        linger: float = 0.1,
        batch: int = 500,
        heartbeat: int = 5,
        confirm_timeout: float = 10.0,
        close_timeout: float = 5.0,
        reconnect_backoff: Backoff | None = None,
        log_every: float = 30.0,
    ) -> None:
        if lookback is not None and lookback <= snapshot_interval:
            raise ValueError("lookback must be longer than snapshot_interval")
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self._url = url
        self.stream = f"{prefix}.checkpoints"
        self._arguments: FieldTable = {
            "x-queue-type": "stream",
            "x-max-age": max_age,
            # Retention drops whole segments: keep them small enough to expire.
            "x-stream-max-segment-size-bytes": 50_000_000,
        }
        self._lookback = lookback
        self._snapshot_interval = snapshot_interval
        self._linger = linger
        self._batch = batch
        self._heartbeat = heartbeat
        self._confirm_timeout = confirm_timeout
        self._close_timeout = close_timeout
        self._backoff = reconnect_backoff or Backoff(base=0.2, cap=5.0)
        self._log_every = log_every
        self.target = redact_url(url.get_secret_value(), keep_user=True)

        self._book = CheckpointBook()
        self._connection: AbstractConnection | None = None
        self._up = asyncio.Event()
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._settled = asyncio.Event()  # set while nothing is owed
        self._settled.set()
        self._task: asyncio.Task[None] | None = None
        self._logged_at: float | None = None
        self.last_error: str | None = None
        self.published = 0  # messages confirmed by the broker
        self.malformed = 0  # messages skipped by readers

    def __repr__(self) -> str:
        return f"CheckpointStream({self.target!r}, stream={self.stream!r})"

    # -- what the rest of the relay calls ----------------------------------------------

    @property
    def connected(self) -> bool:
        connection = self._connection
        return self._up.is_set() and connection is not None and not connection.is_closed

    @property
    def owed(self) -> int:
        """Tenants whose newest Ver the broker has not confirmed yet."""
        return self._book.owed

    def publish(self, tenant: str, ver: int) -> None:
        """Queue ``ver`` for ``tenant``; the sender task sends it. Never blocks."""
        if self._book.offer(tenant, ver):
            self._settled.clear()
            self._wake.set()

    async def flush(self, timeout: float) -> bool:  # noqa: ASYNC109 - the agreed protocol
        """Wait until every Ver published so far is confirmed; False after ``timeout``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._settled.wait(), timeout)
        return self._book.idle

    async def latest(
        self,
        tenants: Sequence[str],
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 - the agreed protocol: a bound, never raised
    ) -> dict[str, int]:
        """The newest Ver on the broker of each of ``tenants`` (absent: none found).

        Never raises for a broker fault: after ``timeout`` (or a lost link) it logs,
        keeps ``last_error`` and returns what it has read so far, possibly nothing; the
        caller's own journal checkpoint is then all it has.
        """
        wanted = set(tenants)
        found: dict[str, int] = {}
        if not wanted:
            return found
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            async with asyncio.timeout_at(deadline):
                await self._up.wait()
                connection = self._connection
                if connection is None or connection.is_closed:
                    raise ConnectionError("checkpoint connection not open")
                complete = await self._read(connection, wanted, found)
        except _LINK_ERRORS as exc:
            complete = False
            self._note_error("cannot read checkpoints", exc, force=True)
        if complete:
            self._book.learn(found)
        else:
            log.warning(
                "checkpoint read incomplete",
                extra={"found": len(found), "tenants": len(wanted), "stream": self.stream},
            )
        return found

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> CheckpointStream:
        self._task = asyncio.create_task(self._run(), name=f"checkpoints-{self.stream}")
        self._task.add_done_callback(self._task_done)
        return self

    def _task_done(self, task: asyncio.Task[None]) -> None:
        """A crash of the sender (a bug) shows at once; :meth:`close` re-raises it."""
        if task.cancelled() or task.exception() is None:
            return
        error = task.exception()
        self.last_error = f"internal error: {type(error).__name__}"
        log.error("checkpoint sender crashed", exc_info=error, extra={"stream": self.stream})

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Send what is owed (up to ``close_timeout``), stop the sender, close the link;
        re-raises a crash of the sender."""
        task = self._task
        if task is None:
            return
        if not task.done() and not await self.flush(self._close_timeout):
            log.warning(
                "checkpoints not confirmed at close",
                extra={"owed": self._book.owed, "stream": self.stream},
            )
        self._stop.set()
        self._wake.set()
        done, _ = await asyncio.wait([task], timeout=self._close_timeout)
        if not done:
            task.cancel()
            await asyncio.wait([task])
        self._task = None
        error = None if task.cancelled() else task.exception()
        if error is not None:
            raise error

    # -- the sender --------------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                connection = await open_connection(
                    self._url.get_secret_value(),
                    within=10,
                    heartbeat=self._heartbeat,
                    name="exmail-relay checkpoints",
                )
            except _LINK_ERRORS as exc:
                self._note_error(f"cannot connect to {self.target}", exc)
                attempt += 1
                await self._pause(self._backoff.delay(attempt))
                continue
            self._connection = connection
            connection.close_callbacks.add(self._connection_closed)
            try:
                await self._session(connection)
                attempt = 0
            except _LINK_ERRORS as exc:
                self._note_error("checkpoint connection lost", exc)
                attempt = 0 if self._up.is_set() else attempt + 1
            finally:
                self._up.clear()
                self._connection = None
                self._book.failed()  # a batch without its confirm is owed again
                with contextlib.suppress(*_LINK_ERRORS):
                    await asyncio.wait_for(connection.close(), timeout=5)
            if not self._stop.is_set():
                await self._pause(self._backoff.delay(attempt))

    async def _session(self, connection: AbstractConnection) -> None:
        channel = await self._op(connection.channel(publisher_confirms=True))
        await self._op(self._declare(channel))
        self._up.set()
        if self.last_error is not None:
            log.info("checkpoint connection up again", extra={"target": self.target})
        self.last_error = None
        self._logged_at = None
        loop = asyncio.get_running_loop()
        snapshot_at = loop.time()  # everything known goes out again at once
        while not self._stop.is_set():
            if connection.is_closed:
                raise ConnectionError("checkpoint connection closed")
            self._wake.clear()
            snapshot = loop.time() >= snapshot_at
            if snapshot:
                snapshot_at = loop.time() + self._snapshot_interval
            batch = self._book.take(snapshot=snapshot)
            if batch:
                await self._send(channel, batch)
            self._book.confirmed()
            if self._book.idle:
                self._settled.set()
            if batch:
                # What arrives meanwhile goes out together: at most one send per
                # ``linger``, which bounds what a reader has to go through.
                await self._pause(self._linger)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, snapshot_at - loop.time()))

    async def _send(self, channel: AbstractChannel, batch: dict[str, int]) -> None:
        """Every chunk published and confirmed, or an error."""
        exchange = channel.default_exchange
        publishes = [
            exchange.publish(
                aio_pika.Message(encode(part), content_type=CONTENT_TYPE),
                routing_key=self.stream,
            )
            for part in chunks(batch, self._batch)
        ]
        await self._op(asyncio.gather(*publishes))
        self.published += len(publishes)

    # -- the reader --------------------------------------------------------------------

    async def _read(
        self, connection: AbstractConnection, wanted: set[str], found: dict[str, int]
    ) -> bool:
        """Consume from the lookback up to a fresh marker into ``found``; True when the
        marker was reached (everything confirmed before the call was seen)."""
        marker = uuid.uuid4().hex
        start: datetime | str = "first"
        if self._lookback is not None:
            start = datetime.now(UTC) - timedelta(seconds=self._lookback)
        channel = await connection.channel(publisher_confirms=True)
        try:
            await channel.set_qos(prefetch_count=1000)
            queue = await self._declare(channel)
            await channel.default_exchange.publish(
                aio_pika.Message(encode_marker(marker), content_type=CONTENT_TYPE),
                routing_key=self.stream,
            )
            reached = asyncio.Event()
            seen_marker = False
            unacked = 0
            skipped: list[str] = []

            async def on_message(message: AbstractIncomingMessage) -> None:
                nonlocal unacked, seen_marker
                decoded = decode(message.body)
                if isinstance(decoded, Malformed):
                    self.malformed += 1
                    skipped.append(decoded.reason)
                elif isinstance(decoded, Marker):
                    if decoded.marker == marker:
                        seen_marker = True
                        reached.set()
                else:
                    merge(found, {t: v for t, v in decoded.vers.items() if t in wanted})
                # Acks only return credit to the stream; one per hundred is enough.
                unacked += 1
                if unacked >= 100 or reached.is_set():
                    unacked = 0
                    await message.ack(multiple=True)

            # A channel (or connection) lost mid-read ends the wait too, not the timeout.
            channel.close_callbacks.add(lambda *_: reached.set())
            tag = await queue.consume(on_message, arguments={"x-stream-offset": start})
            try:
                await reached.wait()
            finally:
                if skipped:  # one line per read, however many there were
                    log.warning(
                        "malformed checkpoint messages skipped",
                        extra={"count": len(skipped), "reason": skipped[0], "stream": self.stream},
                    )
            if not seen_marker:
                raise ConnectionError("checkpoint channel closed during the read")
            with contextlib.suppress(*_LINK_ERRORS):
                await queue.cancel(tag)
            return True
        finally:
            if not channel.is_closed:
                with contextlib.suppress(*_LINK_ERRORS):
                    await asyncio.wait_for(channel.close(), timeout=5)

    # -- small things ------------------------------------------------------------------

    async def _declare(self, channel: AbstractChannel) -> AbstractQueue:
        return await channel.declare_queue(self.stream, durable=True, arguments=self._arguments)

    async def _op(self, awaitable: Awaitable[T]) -> T:
        """One broker operation, bounded: a silent broker must not hang the sender."""
        return await asyncio.wait_for(awaitable, timeout=self._confirm_timeout)

    def _connection_closed(self, sender: object, _exc: BaseException | None = None) -> None:
        if sender is self._connection:
            self._up.clear()
            self._wake.set()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    def _note_error(self, what: str, exc: BaseException, *, force: bool = False) -> None:
        detail = scrub(str(exc) or type(exc).__name__, [self._url.get_secret_value()])[:200]
        self.last_error = f"{what}: {detail}"
        now = asyncio.get_running_loop().time()
        if force or self._logged_at is None or now - self._logged_at >= self._log_every:
            self._logged_at = now
            log.warning(self.last_error, extra={"stream": self.stream})


class _CheckpointTenant(ForwardingTenantObserver):
    """Forwards everything to the wrapped handle; a checkpoint is also published."""

    def __init__(self, inner: TenantObserver, tenant: str, stream: CheckpointStream) -> None:
        super().__init__(inner)
        self._tenant = tenant
        self._stream = stream

    def checkpoint(self, ver: int) -> None:
        self.inner.checkpoint(ver)
        self._stream.publish(self._tenant, ver)


class CheckpointObserver(ForwardingObserver):
    """An :class:`Observer` that wraps another (the Prometheus one in production) and
    also publishes every tenant's checkpoint to ``stream``."""

    def __init__(self, inner: Observer, stream: CheckpointStream) -> None:
        super().__init__(inner)
        self._stream = stream

    def tenant(self, tenant: str) -> TenantObserver:
        return _CheckpointTenant(self.inner.tenant(tenant), tenant, self._stream)
