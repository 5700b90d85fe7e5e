"""An operator's requests to an api2 tenant's directory poller: confirm the held listing
now, or poll now. The poller's own task serves them.

Where it sits: the admin API (:mod:`relay.ops.admin_directory`) asks
:class:`relay.runtime.polling.DirectoryPollers`, which hands an :class:`Ask` to the
tenant's running :class:`relay.runtime.directory2.DirectoryPoller`; the poller's loop
serves it and settles its future, and :func:`answer` waits for that.

Why the poller's task and not the caller's: a poll reads the stored listing, lists the
directory (seconds, for a large company) and commits the difference. A confirmation
committed by another task while a poll is under way would leave that poll diffing
against the listing it read before, so it would commit the same deletions a second
time. Served in the loop that polls, a confirmation runs between polls, one at a time as
polls are; and a release that stops the poller waits for one under way as for a poll, so
nothing is committed after the lease goes. The cost is a wait: a confirmation asked
during a poll is served when that poll ends (:func:`answer` waits ``within`` seconds;
one not yet started then is withdrawn).

Errors (:class:`AskError`): :class:`NothingHeld`, :class:`HoldChanged` (the caller named
another hold than the one kept), :class:`NotPolled` (this replica does not poll the
tenant now: a takeover, a stop), :class:`AskTimeout`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from relay.core.listing_guard import HeldListing

__all__ = [
    "Ask",
    "AskError",
    "AskTimeout",
    "Asks",
    "Confirmed",
    "HoldChanged",
    "NotPolled",
    "NothingHeld",
    "answer",
]

Kind = Literal["confirm", "poll"]


class AskError(Exception):
    """An ask the poller could not serve; the message is safe to show (counts only)."""


class NothingHeld(AskError):
    def __init__(self, tenant: str) -> None:
        super().__init__(f"no directory listing of tenant {tenant!r} is held: nothing to confirm")


class HoldChanged(AskError):
    """The caller named the hold it saw (its ``since``); the one kept now is another."""

    def __init__(self, tenant: str, held: HeldListing) -> None:
        super().__init__(
            f"the listing held for tenant {tenant!r} is not the one named: the one held now"
            f" would delete {held.deleted} of {held.members} members (held since"
            f" {held.since!r}); look again before confirming"
        )
        self.held = held


class NotPolled(AskError):
    def __init__(self, tenant: str) -> None:
        super().__init__(f"this replica does not poll tenant {tenant!r} now")


class AskTimeout(AskError):
    """Not served within the wait. ``taken``: under way (it may still commit), else
    withdrawn (nothing done)."""

    def __init__(self, tenant: str, within: float, *, taken: bool) -> None:
        if taken:
            text = f"under way for tenant {tenant!r}, not done within {within:g} s"
        else:
            text = f"a poll of tenant {tenant!r} is under way: nothing done within {within:g} s"
        super().__init__(text)
        self.taken = taken


@dataclass(frozen=True, slots=True)
class Confirmed:
    """A held listing committed at an operator's request: the hold, and its events."""

    held: HeldListing
    events: int


@dataclass(eq=False, slots=True)
class Ask:
    """One request. ``since``: (confirm) the hold the caller saw, or None: the one held."""

    kind: Kind
    since: float | None
    future: asyncio.Future[Any]
    taken: bool = False  # the poller started serving it

    def settle(self, result: object) -> None:
        """The answer (an exception is raised to the caller); nobody listening: dropped."""
        if self.future.done():  # withdrawn: the caller stopped waiting
            return
        if isinstance(result, BaseException):
            self.future.set_exception(result)
        else:
            self.future.set_result(result)


@dataclass(slots=True)
class Asks:
    """The asks a poller has not settled, in the order they came."""

    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _open: deque[Ask] = field(default_factory=deque)

    def put(self, kind: Kind, since: float | None = None) -> Ask:
        ask = Ask(kind, since, asyncio.get_running_loop().create_future())
        self._open.append(ask)
        self.arrived.set()
        return ask

    def waiting(self, kind: Kind) -> bool:
        """Whether an ask of ``kind`` waits to be taken."""
        return any(a.kind == kind and not a.taken and not a.future.done() for a in self._open)

    def take(self, kind: Kind, *, every: bool = False) -> list[Ask]:
        """The oldest waiting ask of ``kind`` (``every``: all of them), now taken."""
        self._forget()
        taken = []
        for ask in self._open:
            if ask.kind == kind and not ask.taken:
                ask.taken = True
                taken.append(ask)
                if not every:
                    break
        return taken

    def fail_all(self, error: BaseException) -> None:
        """Settle every open ask with ``error`` (the poller stops)."""
        while self._open:
            self._open.popleft().settle(error)

    def _forget(self) -> None:
        """Drop settled and withdrawn asks."""
        self._open = deque(a for a in self._open if not a.future.done())


async def answer(ask: Ask, tenant: str, within: float) -> Any:
    """The result of ``ask`` (its error raised), waited for at most ``within`` seconds;
    past that :class:`AskTimeout`, and an ask not yet taken is withdrawn."""
    try:
        await asyncio.wait({ask.future}, timeout=within)
    finally:
        if not ask.future.done():
            ask.future.cancel()  # withdrawn (a taken one runs on; its answer is dropped)
    if ask.future.cancelled():
        raise AskTimeout(tenant, within, taken=ask.taken)
    return ask.future.result()
