"""The checkpoint store's own broker link: one owned AMQP connection that reconnects.

Where it sits: :class:`relay.runtime.checkpoints.CheckpointStore` runs its sender as a
*session* on this link (:meth:`CheckpointLink.run`) and reads through the connection it
holds. The link connects (``relay.sinks.connect.open_connection``), runs the session
until it fails, reconnects with capped, jittered backoff, logs an outage at most every
``log_every`` seconds, and shows ``connected``, ``down_since`` and ``last_error`` (URL
redacted). A connection whose close the client library reports late, or that is open
but silent (a read timed out on it), is dropped by :meth:`CheckpointLink.reset`.

Kept small and apart so it can move onto a shared reconnecting link later: the store
only needs ``run``, ``up``, ``connection``, ``wake``, ``stop``, ``reset``, ``pause``
and ``note_error``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from aio_pika.abc import AbstractConnection
from pydantic import SecretStr

from relay.core.backoff import Backoff
from relay.core.redact import redact_url, scrub
from relay.sinks.connect import LINK_ERRORS as _LINK_ERRORS
from relay.sinks.connect import open_connection

__all__ = ["CheckpointLink"]

log = logging.getLogger("relay.runtime.checkpoints")


class CheckpointLink:
    """One owned, reconnecting AMQP connection: runs ``session`` on each connection
    until it fails, reconnects with capped, jittered backoff, logs an outage at most
    every ``log_every`` seconds."""

    def __init__(
        self,
        url: SecretStr,
        *,
        name: str,
        heartbeat: int,
        backoff: Backoff,
        log_every: float,
        on_state: Callable[[bool], None],
    ) -> None:
        self._url = url
        self._name = name
        self._heartbeat = heartbeat
        self._backoff = backoff
        self._log_every = log_every
        self._on_state = on_state
        self.target = redact_url(url.get_secret_value(), keep_user=True)
        self.connection: AbstractConnection | None = None
        self.up = asyncio.Event()
        self.stop = asyncio.Event()
        self.wake = asyncio.Event()
        self.last_error: str | None = None
        self.down_since: float | None = time.monotonic()
        self._logged_at: float | None = None
        self._broken = False  # a read found the link dead: the session starts over

    @property
    def connected(self) -> bool:
        c = self.connection
        return self.up.is_set() and c is not None and not c.is_closed

    async def run(self, session: Callable[[AbstractConnection], Awaitable[None]]) -> None:
        attempt = 0
        while not self.stop.is_set():
            try:
                connection = await open_connection(
                    self._url.get_secret_value(),
                    within=10,
                    heartbeat=self._heartbeat,
                    name=self._name,
                )
            except _LINK_ERRORS as exc:
                self.note_error(f"cannot connect to {self.target}", exc)
                attempt += 1
                await self.pause(self._backoff.delay(attempt))
                continue
            self.connection = connection
            connection.close_callbacks.add(self._closed)
            try:
                await session(connection)
                attempt = 0
            except _LINK_ERRORS as exc:
                self.note_error("checkpoint connection lost", exc)
                attempt = 0 if self.up.is_set() else attempt + 1
            finally:
                self.went_down()
                self.connection = None
                with contextlib.suppress(*_LINK_ERRORS):
                    await asyncio.wait_for(connection.close(), timeout=5)
            if not self.stop.is_set():
                await self.pause(self._backoff.delay(attempt))

    def broken(self) -> bool:
        """The session must end: the connection closed, or :meth:`reset` was called."""
        c = self.connection
        if self._broken or c is None or c.is_closed:
            self._broken = False
            return True
        return False

    def reset(self) -> None:
        """A broker operation timed out on a link that looked open (a silent path): end
        the session and connect again, instead of waiting for the client library's own
        heartbeat check, which may never see it."""
        self._broken = True
        self.went_down()
        self.wake.set()

    def went_up(self) -> None:
        self._broken = False
        self.up.set()
        self.down_since = None
        if self.last_error is not None:
            log.info("checkpoint connection up again", extra={"target": self.target})
        self.last_error = None
        self._logged_at = None
        self._on_state(True)

    def went_down(self) -> None:
        if self.up.is_set():
            self.down_since = time.monotonic()
            self._on_state(False)
        self.up.clear()

    def _closed(self, sender: object, _exc: BaseException | None = None) -> None:
        # ``is_closed`` may not say so yet when this runs: the flag ends the session.
        if sender is self.connection:
            self._broken = True
            self.went_down()
            self.wake.set()

    async def pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)

    def note_error(self, what: str, exc: BaseException, *, force: bool = False) -> str:
        detail = scrub(str(exc) or type(exc).__name__, [self._url.get_secret_value()])[:200]
        self.last_error = f"{what}: {detail}"
        now = time.monotonic()
        if force or self._logged_at is None or now - self._logged_at >= self._log_every:
            self._logged_at = now
            log.warning(self.last_error)
        return self.last_error
