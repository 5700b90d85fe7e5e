"""Held ``listen`` requests: who is waiting, and waking them without polling.

Each held request is one ``_Waiter``: a bare future plus the client's ``Ver``, waited on
under a single ``asyncio.timeout`` (one timer handle). No tasks, no loops. The state
calls ``notify`` through its ``on_change`` hook:

- a directory change wakes every waiter whose ``Ver`` is now behind (a version is not
  consumed: each of them is behind on its own);
- a queued push wakes *one* waiter, unless one is already woken and about to take the
  queue. The others keep waiting. The woken handler yields to the loop once before it
  takes, so a burst of pushes leaves in one batch; if it leaves some behind (more than
  ``max_batch``), the server calls ``notify`` again to hand the rest to the next waiter;
- a token superseded or revoked wakes every waiter of its company (``wake_company``):
  each re-checks its token, so one held under the old token answers 1200 at once (the
  token is the fence between relay replicas) and never swallows a push's wake-up.
"""

from __future__ import annotations

import asyncio

from ._model import Company
from ._state import EmulatorState

__all__ = ["ListenHub"]


class _Waiter:
    __slots__ = ("future", "ver")

    def __init__(self, future: asyncio.Future[None], ver: int) -> None:
        self.future = future
        self.ver = ver


class ListenHub:
    """The held listens of every company, keyed by administrator account."""

    def __init__(self, state: EmulatorState) -> None:
        self._waiters: dict[str, list[_Waiter]] = {}
        self.closing = False
        state.on_change = self.notify
        state.on_token_revoked = self.wake_company

    def open_count(self, admin: str | None = None) -> int:
        if admin is not None:
            return len(self._waiters.get(admin, ()))
        return sum(len(w) for w in self._waiters.values())

    def notify(self, company: Company, directory: bool) -> None:
        waiters = self._waiters.get(company.admin)
        if not waiters:
            return
        if directory:
            for w in waiters:
                if w.ver < company.ver and not w.future.done():
                    w.future.set_result(None)
        if company.pending and not any(w.future.done() for w in waiters):
            waiters[0].future.set_result(None)

    def wake_company(self, company: Company) -> None:
        """Wake the company's held listens (its token changed) so each re-checks its token."""
        for w in self._waiters.get(company.admin, ()):
            if not w.future.done():
                w.future.set_result(None)

    def wake_all(self) -> None:
        """Wake every held listen (after a reset) so each re-checks its token."""
        for waiters in self._waiters.values():
            for w in waiters:
                if not w.future.done():
                    w.future.set_result(None)

    def close(self) -> None:
        """The server is stopping: answer every held listen now, hold no new ones."""
        self.closing = True
        self.wake_all()

    async def wait(self, admin: str, ver: int, seconds: float) -> bool:
        """Hold until woken (True) or ``seconds`` pass or the hub closes (False)."""
        if self.closing:
            return False
        waiter = _Waiter(asyncio.get_running_loop().create_future(), ver)
        waiters = self._waiters.setdefault(admin, [])
        waiters.append(waiter)
        try:
            async with asyncio.timeout(seconds):
                await waiter.future
            # Still registered (and done), so further pushes do not wake another waiter
            # while this one lets a burst accumulate.
            await asyncio.sleep(0)
        except TimeoutError:
            return False
        finally:
            current = self._waiters.get(admin)
            if current is not None:
                if waiter in current:
                    current.remove(waiter)
                if not current:
                    del self._waiters[admin]
        return not self.closing
