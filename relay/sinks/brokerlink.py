"""One owned, reconnecting link to RabbitMQ: the connection every broker user runs on.

Where it sits: the AMQP sink, the shard leases and the checkpoint stream each need a
connection that comes back after the broker goes away, shows whether it is up and why
not, bounds every operation (a silent broker must not hang anybody), and logs its
trouble without flooding. :class:`BrokerLink` is that, once. Its holder gives it a
*session*: a coroutine that sets the connection up (channels, declares, consumers),
calls :meth:`BrokerLink.up`, and then works until the link is lost (raising one of
:data:`~relay.sinks.connect.LINK_ERRORS` or :class:`LinkLost`) or the link stops
(returning). A channel the session keeps is handed to :meth:`BrokerLink.watch`: the
broker closing it alone (a refused publish or declare) loses the link just the same.
The link then closes the connection, calls ``on_down``, waits a capped,
jittered backoff (:class:`relay.core.backoff.Backoff`) and opens a new connection for a
new session. It never reconnects behind the session's back (no ``connect_robust``): a
session always knows which connection it runs on, which is what a lease held by an
exclusive queue needs.

The link owns one task. Its crash (a bug: anything but a link error) is logged at once,
shows in ``last_error``, is passed to ``on_crash``, and is raised again by
:meth:`BrokerLink.close`.

Adopting it::

    link = BrokerLink(url=url, name="exmail-relay checkpoints", session=self._session,
                      logger=log, what="checkpoint connection", on_down=self._down)

    async def _session(self, connection: AbstractConnection) -> None:
        channel = await link.op(connection.channel(publisher_confirms=True))
        link.watch(channel, "the checkpoint channel")  # its close loses the link too
        ...                                  # declares, consumers: each through op()
        link.up()                            # connected; backoff and last_error reset
        while not link.stopping:
            link.check()                     # raises LinkLost once the link is lost
            ...                              # the work, each broker call through op()
            await link.pause(1.0)            # sleeps, woken early by stop

    async with link: ...                     # starts the task; leaving closes it

A resource alarm *blocks* the connection (:mod:`relay.sinks.blocking`): the broker reads
nothing from it until the alarm clears, and says so. The link shows it (``blocked``, the
broker's reason; ``blocked_since``), logs it once per block, tells ``block_callbacks``
(the reason, then ``None``), and does not give the connection up for it: :meth:`op`
waits through a block and gives the operation its bound again from the unblock.
Reconnecting would help nothing (the next connection is blocked at its first publish)
and leave the old one on the broker until the alarm clears.

Callbacks (``on_lost``, ``on_down``, ``on_stop``, ``on_crash``) run synchronously on the
event loop. ``on_lost`` runs inside aio-pika's close callback or a timer, where an
exception would only be logged: it is kept and raised by the next :meth:`check`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection
from pydantic import SecretStr

from relay.core.backoff import Backoff
from relay.core.redact import redact_url, scrub
from relay.core.throttle import LogThrottle
from relay.sinks.blocking import blocked_text, last_heard, watch_blocking
from relay.sinks.connect import LINK_ERRORS, describe, open_connection

__all__ = ["BrokerLink", "LinkLost", "Session", "wait_until"]

T = TypeVar("T")

Session = Callable[[AbstractConnection], Awaitable[None]]
"""One connection's life: set up, :meth:`BrokerLink.up`, work; raise when lost."""

_log = logging.getLogger("relay.sinks.brokerlink")


class LinkLost(Exception):
    """The link's connection closed, or its holder gave it up (:meth:`BrokerLink.lose`)."""


class BrokerLink:
    """A reconnecting AMQP connection with an owner. Use as an async context manager."""

    def __init__(
        self,
        *,
        url: SecretStr,
        session: Session,
        name: str,
        what: str = "broker connection",
        heartbeat: int = 5,
        op_timeout: float | None = None,
        connect_timeout: float = 10.0,
        backoff: Backoff | None = None,
        log_every: float = 30.0,
        logger: logging.Logger | None = None,
        log_extra: Mapping[str, object] | None = None,
        client_properties: dict[str, Any] | None = None,
        on_lost: Callable[[], None] | None = None,
        on_down: Callable[[], None] | None = None,
        on_stop: Callable[[], None] | None = None,
        on_crash: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._url = url
        self._session = session
        self._name = name
        self.what = what
        self._heartbeat = heartbeat
        self._op_timeout = op_timeout if op_timeout is not None else float(heartbeat)
        self._connect_timeout = connect_timeout
        self._backoff = backoff or Backoff(base=0.2, cap=5.0)
        self._throttle = LogThrottle(every=log_every)
        self._log = logger or _log
        self._extra = dict(log_extra or {})
        self._client_properties = client_properties
        self._on_lost = on_lost
        self._on_down = on_down
        self._on_stop = on_stop
        self._on_crash = on_crash
        self.target = redact_url(url.get_secret_value(), keep_user=True)

        self._connection: AbstractConnection | None = None
        self._up = False
        self._lost = asyncio.Event()
        self._stop = asyncio.Event()
        self._deferred: Exception | None = None
        self._task: asyncio.Task[None] | None = None
        #: Monotonic time since which no session is up (``None``: one is up).
        self.down_since: float | None = time.monotonic()
        #: Why the link is not up, or what went wrong last (URL redacted, no secret).
        self.last_error: str | None = None
        #: While RabbitMQ blocks the connection (a resource alarm): its reason, e.g.
        #: ``low on disk``; since when (monotonic, and wall clock for the status page).
        self.blocked: str | None = None
        self.blocked_since: float | None = None
        self.blocked_at: float | None = None
        #: Told ``blocked``'s reason when a block starts, ``None`` when it ends (or its
        #: connection does). Synchronous; what one raises is raised by :meth:`check`.
        self.block_callbacks: list[Callable[[str | None], None]] = []
        self._unblocked = asyncio.Event()
        self._unblocked.set()
        self._unblocked_at = float("-inf")  # loop time of the last unblock

    def __repr__(self) -> str:
        return f"BrokerLink({self.target!r}, name={self._name!r}, connected={self.connected})"

    # -- what holders read -------------------------------------------------------------

    @property
    def connection(self) -> AbstractConnection | None:
        """The current session's connection (``None`` between sessions)."""
        return self._connection

    @property
    def connected(self) -> bool:
        """A session is up and its connection is neither closed nor given up."""
        connection = self._connection
        return (
            self._up
            and connection is not None
            and not connection.is_closed
            and not self._lost.is_set()
        )

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def block_status(self) -> dict[str, str | float] | None:
        """While blocked: the broker's ``reason`` and ``since`` when (wall clock)."""
        if self.blocked is None or self.blocked_at is None:
            return None
        return {"reason": self.blocked, "since": round(self.blocked_at, 3)}

    @property
    def unblocked_at(self) -> float:
        """Loop time at which the last block ended (``-inf``: none did)."""
        return self._unblocked_at

    # -- what sessions call ------------------------------------------------------------

    def up(self) -> None:
        """The session is set up: connected, ``last_error`` cleared, backoff reset."""
        if self.last_error is not None and not self._throttle.quiet:
            self._log.info(f"{self.what} up again", extra={**self._extra, "target": self.target})
        elif self._throttle.quiet:
            self._log.info(f"{self.what} up", extra={**self._extra, "target": self.target})
        self._throttle.reset()
        self._up = True
        self.last_error = None
        self.down_since = None

    def check(self) -> None:
        """Raise what an ``on_lost`` callback raised, or :class:`LinkLost` once the link
        is lost (its connection closed, or :meth:`lose` called)."""
        if self._deferred is not None:
            error, self._deferred = self._deferred, None
            raise error
        connection = self._connection
        if self._lost.is_set() or connection is None or connection.is_closed:
            raise LinkLost(self.last_error or f"{self.what} is gone")

    def lose(self, reason: str | None = None) -> None:
        """Give the current connection up now (synchronous: for timers and callbacks).
        ``on_lost`` runs; the session's next :meth:`check` raises :class:`LinkLost`."""
        if self._lost.is_set():
            return
        if reason is not None:
            self.last_error = reason
        self._lost.set()
        if self._on_lost is not None:
            try:
                self._on_lost()
            except Exception as exc:  # noqa: BLE001 - re-raised by check(), in the session
                self._deferred = exc

    def watch(self, channel: AbstractChannel, what: str) -> None:
        """Hold ``channel`` for the rest of the session: once it closes while the
        connection stays open (the broker refused a publish to a deleted exchange, say,
        and closed the channel), the link is lost as if the connection had closed, with
        ``the broker closed <what>: <reply code and text>`` as ``last_error``. A session
        on a dead channel would otherwise hold a live connection, and never reconnect.
        Only for the channels a session keeps; not for short ones the broker may refuse.
        """
        connection = self._connection
        secret = self._url.get_secret_value()

        def closed(_sender: object, exc: BaseException | None = None) -> None:
            if (
                connection is None
                or connection is not self._connection  # an ended session's channel
                or connection.is_closed  # the connection's own close reports it
                or isinstance(exc, ConnectionError)  # so does a connection closing now
                or self._stop.is_set()
            ):
                return
            why = describe(exc) if isinstance(exc, Exception) else "closed"
            self.lose(f"the broker closed {what}: {scrub(why, [secret])}")

        channel.close_callbacks.add(closed)
        if channel.is_closed:  # closed before it was watched
            closed(channel, None)

    async def abort(self, reason: str) -> None:
        """:meth:`lose`, then close the connection with ``reason`` (bounded): every
        publish still awaiting its confirm on it is rejected at once."""
        self.lose(reason)
        connection = self._connection
        transport = getattr(connection, "transport", None) if connection is not None else None
        if transport is None:
            return
        error = aiormq.exceptions.ConnectionClosed(320, reason)
        with contextlib.suppress(*LINK_ERRORS, RuntimeError):
            await asyncio.wait_for(transport.connection.close(error), timeout=5)

    async def op(self, awaitable: Awaitable[T], timeout: float | None = None) -> T:  # noqa: ASYNC109 - a bound per broker call
        """One broker operation, bounded (``op_timeout``, default one heartbeat): past
        the bound, ``TimeoutError``. A block of the connection stops the clock: the
        operation waits until the broker lets the connection go (or the link is lost:
        :class:`LinkLost`; or stops: ``TimeoutError``), then has its bound again."""
        limit = self._op_timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(awaitable)
        deadline = loop.time() + limit
        try:
            while True:
                done, _ = await asyncio.wait([task], timeout=max(0.0, deadline - loop.time()))
                if done:
                    return task.result()
                if self.blocked is not None and not self._stop.is_set():
                    await self._first(self._unblocked, self._lost, self._stop)
                    if self._lost.is_set():
                        self.check()  # raises LinkLost
                    deadline = loop.time() + limit
                elif self._unblocked_at + limit > loop.time():
                    deadline = self._unblocked_at + limit  # unblocked meanwhile
                else:
                    raise TimeoutError
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait([task])
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: raised above, or not wanted any more

    @staticmethod
    async def _first(*events: asyncio.Event) -> None:
        """Wait until one of ``events`` is set."""
        waiters = [asyncio.ensure_future(event.wait()) for event in events]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)

    def last_heard(self) -> float | None:
        """Loop time of the last frame from the broker on the current connection."""
        return last_heard(self._connection)

    async def pause(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, less once the link stops; True when stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)
        return self._stop.is_set()

    async def until_lost(self) -> None:
        """For sessions with nothing to do but hold: return when the link stops, raise
        :class:`LinkLost` when it is lost."""
        await self._first(self._stop, self._lost)
        if not self._stop.is_set():
            self.check()

    async def wait_connected(self, seconds: float) -> bool:
        """Wait until connected (start-up, tests); False after ``seconds``."""
        return await wait_until(lambda: self.connected, seconds)

    def note_error(self, what: str, exc: BaseException, *, force: bool = False) -> None:
        """Keep ``what: <exc>`` as ``last_error`` (URL and password scrubbed) and log it,
        at most every ``log_every`` seconds unless ``force``."""
        detail = scrub(describe(exc), [self._url.get_secret_value()])[:200]
        if self.blocked is not None and isinstance(exc, TimeoutError):
            detail = blocked_text(self.blocked)  # why nothing came back
        self.last_error = f"{what}: {detail}"
        self.warn(self.last_error, force=force)

    def warn(self, message: str, *, force: bool = False) -> None:
        """A warning through the link's throttle (and its log extras)."""
        suppressed = self._throttle.admit(time.monotonic())
        if suppressed is None and force:
            suppressed = 0
        if suppressed is not None:
            extra = {**self._extra, "suppressed": suppressed} if suppressed else self._extra
            self._log.warning(message, extra=extra)

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> BrokerLink:
        self._task = asyncio.create_task(self._run(), name=f"link-{self._name}")
        self._task.add_done_callback(self._task_done)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self, *, grace: float = 10.0) -> None:
        """Stop: the session returns (within ``grace``, else it is cancelled), the
        connection closes. Re-raises a crash of the link's task."""
        task = self._task
        if task is None:
            return
        self._stop.set()
        if self._on_stop is not None:
            self._on_stop()
        done, _ = await asyncio.wait([task], timeout=grace)
        if not done:
            task.cancel()
            await asyncio.wait([task])
        self._task = None
        error = None if task.cancelled() else task.exception()
        if error is not None:
            raise error

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        error = task.exception()
        assert error is not None
        self.last_error = f"internal error: {type(error).__name__}"
        self._up = False
        self._log.error(f"{self.what} crashed", exc_info=error, extra=self._extra)
        if self._on_crash is not None:
            self._on_crash(error)

    # -- the loop ----------------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            self._lost.clear()
            self._deferred = None
            try:
                connection = await open_connection(
                    self._url.get_secret_value(),
                    within=self._connect_timeout,
                    heartbeat=self._heartbeat,
                    name=self._name,
                    client_properties=self._client_properties,
                )
            except LINK_ERRORS as exc:
                self.note_error(f"cannot connect to {self.target}", exc)
                attempt += 1
                await self.pause(self._backoff.delay(attempt))
                continue
            self._connection = connection
            connection.close_callbacks.add(self._closed)
            watch_blocking(
                connection,
                blocked=functools.partial(self._block, connection),
                unblocked=functools.partial(self._unblock, connection),
            )
            came_up = False
            try:
                await self._session(connection)
            except (*LINK_ERRORS, LinkLost) as exc:
                if not self._stop.is_set():
                    # "lost" once up; a session refused while setting up did not get going.
                    self.note_error(f"{self.what} {'lost' if self._up else 'set-up failed'}", exc)
            finally:
                came_up = self._up
                self._up = False
                self._connection = None
                self._end_block()  # a new connection starts unblocked
                if self.down_since is None:
                    self.down_since = time.monotonic()
                # Closed first, whatever ended the session (a bug included): the broker
                # then drops what this connection held (exclusive queues, consumers).
                try:
                    with contextlib.suppress(*LINK_ERRORS):
                        await asyncio.wait_for(connection.close(), timeout=5)
                finally:
                    if self._on_down is not None:
                        self._on_down()
            # A session that got going resets the backoff; one refused at setup does not.
            attempt = 0 if came_up else attempt + 1
            if not self._stop.is_set():
                await self.pause(self._backoff.delay(attempt))

    # -- blocks ----------------------------------------------------------------------

    def _block(self, connection: AbstractConnection, reason: str) -> None:
        if connection is not self._connection or self.blocked is not None:
            return
        self.blocked = scrub(reason, [self._url.get_secret_value()])[:100]
        self.blocked_since, self.blocked_at = time.monotonic(), time.time()
        self._unblocked.clear()
        self._log.warning(
            "RabbitMQ blocked publishing (resource alarm); waiting, not reconnecting",
            extra={**self._extra, "link": self.what, "reason": self.blocked},
        )
        self._tell(self.blocked)

    def _unblock(self, connection: AbstractConnection) -> None:
        if connection is not self._connection or self.blocked_since is None:
            return
        seconds = round(time.monotonic() - self.blocked_since, 1)
        self._log.info(
            "RabbitMQ unblocked publishing",
            extra={**self._extra, "link": self.what, "blocked_seconds": seconds},
        )
        self._end_block()

    def _end_block(self) -> None:
        if self.blocked is None:
            return
        self.blocked = self.blocked_since = self.blocked_at = None
        self._unblocked_at = asyncio.get_running_loop().time()
        self._unblocked.set()
        self._tell(None)

    def _tell(self, reason: str | None) -> None:
        for callback in self.block_callbacks:
            try:
                callback(reason)
            except Exception as exc:  # noqa: BLE001 - logged, and raised by the next check()
                self._log.exception("block callback failed", extra=self._extra)
                self._deferred = exc

    def _closed(self, sender: object, _exc: BaseException | None = None) -> None:
        if sender is not self._connection:
            return  # an earlier connection, closed by us and reported already
        why = ""
        if isinstance(_exc, Exception):
            why = ": " + scrub(describe(_exc), [self._url.get_secret_value()])
        if not self._stop.is_set() and not self._lost.is_set():
            self.last_error = f"{self.what} to {self.target} closed{why}"
        self.lose()


async def wait_until(condition: Callable[[], bool], seconds: float) -> bool:
    """Poll ``condition`` every 50 ms until it holds (True) or ``seconds`` pass (False):
    for a holder's own notion of connected, which no single event marks."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        if asyncio.get_running_loop().time() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True
