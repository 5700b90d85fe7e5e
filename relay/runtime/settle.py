"""Settle batching: one journal write for the outcomes of every attempt that finishes in
the same event-loop iteration.

Where it sits: inside :class:`relay.runtime.drainer.Drainer`. An attempt hands its
:class:`~relay.core.delivery.Settlement` to :meth:`SettleBatcher.record` and awaits the
flush it gets back; the row stays in flight until then, so it cannot be claimed twice.
A burst of finishing attempts costs one ``Journal.settle`` call (set-wise statements),
not one per row.

Every flush is a task owned here, never fire-and-forget: it answers ``None`` (recorded)
or the :class:`~relay.journal.JournalError` that refused it, after telling the drainer
through ``refused`` or ``recorded``. Anything else it raises is a bug, handed to
``crashed`` (the drainer raises it out of ``run``) as well as to the awaiting attempts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from relay.core.delivery import Settlement
from relay.journal import Journal, JournalClosed, JournalError

__all__ = ["SettleBatcher"]

Flush = asyncio.Task[JournalError | None]


class SettleBatcher:
    """Batches one sink's settlements into shared journal writes."""

    def __init__(
        self,
        journal: Journal,
        sink: str,
        *,
        refused: Callable[[JournalError], None],
        recorded: Callable[[], None],
        crashed: Callable[[BaseException], None],
    ) -> None:
        self.journal = journal
        self.sink = sink
        self._refused = refused
        self._recorded = recorded
        self._crashed = crashed
        # The settlements queued in this loop iteration, and the flush that takes them.
        self._batch: tuple[list[Settlement], Flush] | None = None
        self._flushes: set[Flush] = set()

    def record(self, update: Settlement) -> Flush:
        """Queue ``update``; the returned flush ends once it is recorded (``None``) or
        refused (the error). Await it shielded: cancelling one attempt must not cancel
        its neighbours' write."""
        if self._batch is None:
            updates: list[Settlement] = []
            flush = asyncio.create_task(self._flush(updates), name=f"settle-{self.sink}")
            self._flushes.add(flush)
            flush.add_done_callback(self._flushed)
            self._batch = (updates, flush)
        updates, flush = self._batch
        updates.append(update)
        return flush

    async def wait(self, seconds: float | None = None) -> None:
        """Wait for the flushes under way (at most ``seconds``, without raising)."""
        if self._flushes:
            await asyncio.wait(list(self._flushes), timeout=seconds)

    async def _flush(self, updates: list[Settlement]) -> JournalError | None:
        # The first step of this task: every attempt that finished before it has
        # queued its settlement; later ones start the next batch.
        self._batch = None
        try:
            await self.journal.settle(self.sink, updates)
        except JournalClosed as exc:
            return exc
        except JournalError as exc:
            self._refused(exc)
            return exc
        self._recorded()
        return None

    def _flushed(self, flush: Flush) -> None:
        self._flushes.discard(flush)
        if not flush.cancelled() and (error := flush.exception()) is not None:
            self._crashed(error)
