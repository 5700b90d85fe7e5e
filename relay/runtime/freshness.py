"""How long a replica may believe in its shard leases: the client's own clock.

Where it sits: :class:`relay.runtime.leases.LeaseManager` tells a :class:`LeaseFreshness`
of every presence publish the broker confirms, asks :meth:`LeaseFreshness.fresh` in
``holds()``, and is called back (``on_expired``) when the belief runs out: it then gives
every lease up and drops the connection.

The rule (docs/leases.md, "The client must stop believing before the broker stops
enforcing"): a confirm proves that the broker heard from the lease connection no earlier
than the publish was *sent*, and the broker frees a connection's queues only after about
two heartbeats without hearing from it. So a lease counts as held until ``heartbeat``
seconds after the send of the last confirmed publish: a margin of about one heartbeat.

A resource alarm blocks the connection (:mod:`relay.sinks.blocking`): the broker reads
nothing from it, so no publish is confirmed, however healthy the path. Measured on the
real broker, a blocked connection is also one the broker does not free: it does not
watch its heartbeats while it blocks it (a client silent for many heartbeats keeps its
exclusive queues), and frees a silent one about three heartbeats after the alarm
clears. What can end a lease during a block is the path dying, and then the broker's
frames stop coming too: it keeps sending heartbeats, every half heartbeat, to a blocked
connection. So while the link is blocked the broker's frames carry the belief instead of
confirms: held until ``heartbeat`` seconds after the last frame received, the
``connection.unblocked`` frame included. The broker sent that frame while the lease was
still safe (blocked, or at the unblock), and frees it no earlier than about two
heartbeats after the unblock: the margin is one heartbeat less the time the frame took
to reach us and be read. That is the same margin as the confirm rule's as long as frames
arrive within a fraction of a heartbeat; a replica paused across the unblock (SIGSTOP, a
long GC) can read old frames late, and is fenced by the Exmail token, as for any pause
(docs/leases.md, "The fence").
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from relay.sinks.brokerlink import BrokerLink

__all__ = ["LeaseFreshness"]


class LeaseFreshness:
    """Until when the leases of ``link``'s current session count as held."""

    def __init__(
        self, *, link: BrokerLink, heartbeat: float, on_expired: Callable[[], None]
    ) -> None:
        self._link = link
        self._heartbeat = heartbeat
        self._on_expired = on_expired
        self._until = 0.0  # loop time: by confirms, and by frames heard up to an unblock
        self._timer: asyncio.TimerHandle | None = None
        link.block_callbacks.append(self._block_changed)

    @property
    def until(self) -> float:
        """Loop time until which the leases count as held (past: they do not)."""
        until = self._until
        if self._link.blocked is not None and (heard := self._link.last_heard()) is not None:
            until = max(until, heard + self._heartbeat)
        return until

    def fresh(self, now: float) -> bool:
        return now < self.until

    def confirmed(self, sent: float) -> None:
        """A publish sent at loop time ``sent`` was confirmed by the broker. (One sent
        before a block and confirmed after it moves nothing back.)"""
        self._until = max(self._until, sent + self._heartbeat)
        self._arm()

    def stop(self) -> None:
        """The session ended: no timer is left to fire into the next one."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _block_changed(self, reason: str | None) -> None:
        if reason is None and self._timer is not None and self._link.connected:
            # Unblocked: the frame that said so counts, as the heartbeats before it did.
            heard = self._link.last_heard()
            if heard is not None:
                self._until = max(self._until, heard + self._heartbeat)
            self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_at(self.until, self._fire)

    def _fire(self) -> None:
        self._timer = None
        if self.fresh(asyncio.get_running_loop().time()):
            self._arm()  # blocked: the broker's frames kept it fresh
        else:
            self._on_expired()
