"""Settle batching: one journal write for the outcomes of every attempt that finishes in
the same event-loop iteration.

Where it sits: inside :class:`relay.runtime.drainer.Drainer`. An attempt hands its
:class:`~relay.core.delivery.Settlement` to :meth:`SettleBatcher.record` and ends; the
drainer keeps the row in flight until the flush has told it (``settled``), so it cannot
be claimed twice. A burst of finishing attempts costs one ``Journal.settle`` call
(set-wise statements), not one per row, and one call of ``settled`` for the batch, not
a task wake-up per row (issue 20).

Every flush is a task owned here, never fire-and-forget: ``settled(updates, error)`` is
called with ``None`` (recorded) or the :class:`~relay.journal.JournalError` that refused
the write, after the drainer was told through ``refused`` or ``recorded``; the future
:meth:`SettleBatcher.record` returns learns the same. Anything else the flush raises is
a bug: ``settled`` hears it (the rows leave the flight: they stay pending), then it is
handed to ``crashed`` (the drainer raises it out of ``run``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

from relay.core.delivery import Settlement
from relay.journal import Journal, JournalClosed, JournalError

__all__ = ["SettleBatcher"]

Flush = asyncio.Task[None]
# What a batch's attempts await: None (recorded) or the error that refused the write.
Recorded = asyncio.Future[JournalError | None]
# Told once per batch, after its write: None (recorded), the JournalError that refused
# it, or the bug the flush raised; and whether any of its rows asked for a wake-up.
Settled = Callable[[list[Settlement], BaseException | None, bool], None]


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
        settled: Settled | None = None,
    ) -> None:
        self.journal = journal
        self.sink = sink
        self._refused = refused
        self._recorded = recorded
        self._crashed = crashed
        self._settled = settled
        # The rows queued and not yet told (seq -> wake the drainer once recorded).
        self._settling: dict[int, bool] = {}
        # The settlements queued in this loop iteration, and what their attempts await.
        self._batch: tuple[list[Settlement], Recorded] | None = None
        self._flushes: set[Flush] = set()

    def __len__(self) -> int:
        return len(self._settling)

    def __iter__(self) -> Iterator[int]:
        return iter(self._settling)

    def record(self, update: Settlement, *, wake: bool = False) -> Recorded:
        """Queue ``update``; the returned future is ``None`` once it is recorded, or the
        error that refused it (``settled`` hears it first). One future per batch:
        cancelling an attempt that awaits it cancels its neighbours too, never the
        write itself, which is a task of its own."""
        if self._batch is None:
            updates: list[Settlement] = []
            done: Recorded = asyncio.get_running_loop().create_future()
            flush = asyncio.create_task(self._flush(updates, done), name=f"settle-{self.sink}")
            self._flushes.add(flush)
            flush.add_done_callback(self._flushed)
            self._batch = (updates, done)
        updates, done = self._batch
        updates.append(update)
        self._settling[update.seq] = wake
        return done

    async def wait(self, seconds: float | None = None) -> None:
        """Wait for the flushes under way (at most ``seconds``, without raising)."""
        if self._flushes:
            await asyncio.wait(list(self._flushes), timeout=seconds)

    async def _flush(self, updates: list[Settlement], done: Recorded) -> None:
        # The first step of this task: every attempt that finished before it has
        # queued its settlement; later ones start the next batch.
        self._batch = None
        result: JournalError | None = None
        try:
            await self.journal.settle(self.sink, updates)
        except JournalClosed as exc:
            result = exc
        except JournalError as exc:
            self._refused(exc)
            result = exc
        except BaseException as exc:
            self._tell(updates, exc)
            done.cancel()  # the bug itself goes to ``crashed`` (see _flushed)
            raise
        else:
            self._recorded()
        self._tell(updates, result)
        if not done.done():
            done.set_result(result)

    def _tell(self, updates: list[Settlement], error: BaseException | None) -> None:
        wakes = [self._settling.pop(update.seq, False) for update in updates]
        if self._settled is not None:
            self._settled(updates, error, any(wakes))

    def _flushed(self, flush: Flush) -> None:
        self._flushes.discard(flush)
        if not flush.cancelled() and (error := flush.exception()) is not None:
            self._crashed(error)
