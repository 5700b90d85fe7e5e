"""A drainer's attempts in flight: owned tasks whose unexpected exceptions reach their
owner.

Where it sits: inside :class:`relay.runtime.drainer.Drainer`. Every delivery attempt is a
task started here, keyed by the delivery's ``seq`` (so a claim can skip the rows in
flight). Its done callback hands an unexpected exception (a bug: an expected failure is
an outcome, never an exception) to :meth:`Attempts.collect`, which keeps it for the
drainer's loop to raise; nothing is fire-and-forget, so nothing ends as "Task exception
was never retrieved". The settle batcher hands its flushes' bugs to ``collect`` too.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

__all__ = ["Attempts"]

log = logging.getLogger("relay.runtime.drainer")


class Attempts:
    """The attempts in flight, by seq; ``ended(failed)`` runs after each one ends."""

    def __init__(self, sink: str, ended: Callable[[bool], None]) -> None:
        self._sink = sink
        self._ended = ended
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self.errors: list[BaseException] = []  # unexpected exceptions, for the owner

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self) -> Iterator[int]:
        return iter(self._tasks)

    def start(self, seq: int, attempt: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(attempt, name=f"deliver-{self._sink}-{seq}")
        self._tasks[seq] = task
        task.add_done_callback(functools.partial(self._finished, seq))

    def _finished(self, seq: int, task: asyncio.Task[None]) -> None:
        self._tasks.pop(seq, None)
        if not task.cancelled() and (error := task.exception()) is not None:
            self.collect(error)
        else:
            self._ended(False)

    def collect(self, error: BaseException) -> None:
        """Keep an owned task's unexpected exception for the owner to raise."""
        if all(error is not seen for seen in self.errors):
            self.errors.append(error)
        self._ended(True)

    def raise_errors(self) -> None:
        """Raise the first kept exception (the others are logged)."""
        if self.errors:
            first = self.errors[0]
            self.log_errors(besides=first)
            raise first

    def log_errors(self, *, besides: BaseException) -> None:
        """Log the kept exceptions other than ``besides`` (the one being raised)."""
        for error in self.errors:
            if error is not besides:
                log.error("drainer task failed", exc_info=error, extra={"sink": self._sink})
        self.errors.clear()

    async def settled(self, seconds: float | None = None) -> None:
        """Wait for the attempts in flight; after ``seconds``, cancel the rest and wait
        for them too (a cancelled attempt leaves its row pending: at-least-once)."""
        if not self._tasks:
            return
        _, still = await asyncio.wait(list(self._tasks.values()), timeout=seconds)
        for task in still:
            task.cancel()
        if still:
            await asyncio.wait(still)

    async def cancel(self) -> None:
        """Cancel every attempt in flight and wait for them."""
        await self.settled(0)
