"""The journal's single writer: one thread, one connection, group commit, and the
in-memory counters that only a commit changes.

Where it sits: under the :class:`~relay.journal.Journal` facade, which hands it *write
functions*; above :mod:`._schema`, which opens its connection.

Why it is shaped this way:

- **One thread owns the writing connection.** SQLite calls block, so every write runs
  on one dedicated thread; the event loop only awaits futures, and there are no locking
  questions inside the process.
- **Group commit.** Writes are queued; the writer runs everything queued so far in one
  ``BEGIN IMMEDIATE`` ... ``COMMIT``. A batch holding only relaxed writes (delivery
  outcomes, prune deletes: ``durable=False``) commits under ``synchronous=NORMAL``, with
  no fsync; the next durable commit syncs the WAL, and with it them.
- **One failing write fails alone.** If any write function of a batch raises, the whole
  transaction is rolled back and each write is run again in a transaction of its own:
  the others are committed and their callers answered; only the failing caller hears
  the error (SQLite's wrapped in :class:`JournalError`, or :class:`JournalCorrupt` for a
  damaged file; anything else unchanged).
- **The counters change with the commit, not after it.** A write function records what
  it changed (backlog events and bytes, stored events, sinks to wake) on the batch's
  :class:`Tx`, inside the transaction. After ``COMMIT`` returns, the writer applies the
  batch's changes, then resolves the waiters. A caller cancelled while it awaits its
  commit cannot skip the update; a rolled-back batch changes nothing.
- **Other connections' commits are noticed.** Another process (``exmail-relay
  deadletters replay``, ``endpoint enable``) may commit to the same file. SQLite's
  ``PRAGMA data_version`` on this connection changes when any other connection has
  committed since this one last looked. Each transaction looks right after ``BEGIN
  IMMEDIATE``, holding the write lock, so nobody can commit in between; if it changed,
  the counters are recounted in that same transaction (the backlog through the
  ``events_backlog`` partial index, sized by the backlog: up to ~10 µs per backlog
  event; the event total with one ``COUNT(*)``, which walks an index of the whole
  table: ~15-25 ms per million events kept, paid only when another process wrote), and
  the batch's changes are added to the recount.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from relay.journal._exceptions import JournalClosed, JournalError, from_sqlite, is_corrupt
from relay.journal._schema import open_writer

__all__ = ["Counts", "Tx", "Writer"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Counts:
    """The journal's in-memory counters, replaced as a whole by each commit."""

    events: int = 0  # rows in ``events``
    backlog_events: int = 0  # events some sink still owes (``remaining > 0``)
    backlog_bytes: int = 0  # their bodies' bytes


@dataclass(slots=True)
class Tx:
    """A batch's open transaction as its write functions see it: the connection, and
    what they changed. The writer applies the changes only if the batch commits."""

    db: sqlite3.Connection
    events: int = 0
    backlog_events: int = 0
    backlog_bytes: int = 0
    woken: set[str] = field(default_factory=set)

    def stored(self, events: int) -> None:
        """``events`` rows were added to (or, negative, deleted from) ``events``."""
        self.events += events

    def backlog(self, events: int, size: int) -> None:
        """The backlog grew (or, negative, shrank) by ``events`` of ``size`` bytes."""
        self.backlog_events += events
        self.backlog_bytes += size

    def wake(self, sinks: Iterable[str]) -> None:
        """These sinks' drainers should look again once the batch is committed."""
        self.woken.update(sinks)


#: What a caller queues: runs inside a batch's transaction, its result is the caller's.
Write = Callable[[Tx], T]

# A queued write: the function, who waits for it, whether it must be synced to disk
# before that waiter hears it is done.
_Queued = tuple[Callable[[Tx], Any], asyncio.Future[Any], bool]


@dataclass(frozen=True, slots=True)
class _Committed:
    results: list[Any]
    tx: Tx
    recount: Counts | None  # set when another connection had committed
    data_version: int


def count(db: sqlite3.Connection) -> Counts:
    """The counters as the file holds them (inside the caller's transaction)."""
    backlog, size = db.execute(
        "SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM events"
        " INDEXED BY events_backlog WHERE remaining > 0"
    ).fetchone()
    (events,) = db.execute("SELECT COUNT(*) FROM events").fetchone()
    return Counts(int(events), int(backlog), int(size))


class Writer:
    """Owns the writing connection and its thread; see the module docstring.

    ``on_commit(woken, foreign)`` is called on the event loop after each commit, once the
    counters are updated and before any waiter is resumed: ``woken`` are the sinks the
    batch's writes asked to wake, ``foreign`` is true when another connection's commit
    was found (and counted).
    """

    def __init__(
        self,
        path: Path,
        *,
        synchronous: Literal["full", "normal"],
        on_commit: Callable[[set[str], bool], None],
    ) -> None:
        self._path = path
        self._synchronous = synchronous
        self._on_commit = on_commit
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        self._db: sqlite3.Connection | None = None
        self._data_version = -1
        self._queue: list[_Queued] = []
        self._queued = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.counts = Counts()
        self.commits = 0

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        """Open (create, migrate) the file and count it; then start taking writes."""
        try:
            await self.call(self._open_sync)
        except BaseException:
            self._executor.shutdown(wait=False)
            raise
        self._task = asyncio.create_task(self._write_loop(), name="journal-writer")
        self._task.add_done_callback(self._stopped)

    def _stopped(self, task: asyncio.Task[None]) -> None:
        """The write loop ends only when drained; if it died (a bug), every write queued
        or to come fails with the reason instead of waiting for ever. ``close()`` awaits
        the task and raises the bug itself."""
        if task.cancelled() or task.exception() is None:
            return
        self._stopping = True
        error = JournalError(f"the journal's writer stopped: {task.exception()!r}")
        batch, self._queue = self._queue, []
        for _, future, _ in batch:
            if not future.done():
                future.set_exception(error)

    def _open_sync(self) -> None:
        db = open_writer(self._path, synchronous=self._synchronous)
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                (self._data_version,) = db.execute("PRAGMA data_version").fetchone()
                self.counts = count(db)
            finally:
                db.execute("COMMIT")
        except BaseException:
            db.close()
            raise
        self._db = db

    async def drain(self) -> None:
        """Commit what is queued, then refuse new writes."""
        self._stopping = True
        self._queued.set()
        if self._task is not None:
            await self._task

    async def close(self) -> None:
        """Drain, checkpoint the WAL into the file and close. Safe to call twice."""
        try:
            await self.drain()
        finally:
            if self._db is not None:
                with contextlib.suppress(sqlite3.Error):
                    await self.call(self._close_sync)
            self._executor.shutdown(wait=True)

    def _close_sync(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            try:
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                db.close()

    # -- writing -----------------------------------------------------------------------

    async def write(self, fn: Write[T], *, durable: bool = True) -> T:
        """Queue ``fn`` for the next group commit and wait until it is committed.

        ``durable=False`` marks a write whose loss in a power cut costs nothing but a
        repeat (a delivery outcome: the event is sent again with the same id). A batch of
        only such writes commits without an fsync under ``synchronous=FULL``; the next
        durable commit syncs the WAL, and with it them. A process crash loses neither.

        Once queued, a write is committed even if its caller stops waiting (is
        cancelled); its changes to the counters are applied all the same.
        """
        if self._stopping:
            raise JournalClosed("the journal is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((fn, future, durable))
        self._queued.set()
        return await future

    async def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the writer's thread, outside any batch (opening, closing, and
        tests that instrument the connection)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def connection(self) -> sqlite3.Connection:
        """The writing connection; only usable on the writer's thread."""
        if self._db is None:
            raise JournalClosed("the journal is closed")
        return self._db

    async def _write_loop(self) -> None:
        while True:
            await self._queued.wait()
            self._queued.clear()
            batch, self._queue = self._queue, []
            if batch:
                try:
                    await self._commit(batch)
                except BaseException as exc:
                    # A bug (or a cancel): this batch's callers hear it, then _stopped
                    # fails whatever else is queued.
                    for _, future, _ in batch:
                        if not future.done():
                            future.set_exception(
                                JournalError(f"the journal's writer stopped: {exc!r}")
                            )
                    raise
            if self._stopping and not self._queue:
                return

    async def _commit(self, batch: list[_Queued]) -> None:
        fns = [fn for fn, _, _ in batch]
        durable = any(flag for _, _, flag in batch)
        try:
            done = await self.call(lambda: self._transaction(fns, durable=durable))
        except Exception as exc:  # noqa: BLE001 -- handed to the waiting caller, not swallowed
            if len(batch) > 1:
                # Isolate the failing write: each one again in its own transaction.
                for item in batch:
                    await self._commit([item])
                return
            future = batch[0][1]
            if not future.done():
                if isinstance(exc, sqlite3.Error):
                    error: Exception = (
                        from_sqlite(exc, path=self._path, doing="write")
                        if is_corrupt(exc)
                        else JournalError(f"journal write failed: {exc}")
                    )
                    error.__cause__ = exc
                else:
                    error = exc
                future.set_exception(error)
            return
        # Committed: the counters first, then the waiters. No await in between, so no
        # caller (cancelled or not) ever sees the commit without its counts.
        self._apply(done)
        for (_, future, _), result in zip(batch, done.results, strict=True):
            if not future.done():
                future.set_result(result)

    def _transaction(self, fns: Sequence[Callable[[Tx], Any]], *, durable: bool) -> _Committed:
        db = self.connection()
        relaxed = not durable and self._synchronous == "full"
        if relaxed:
            db.execute("PRAGMA synchronous=NORMAL")
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                (version,) = db.execute("PRAGMA data_version").fetchone()
                recount = count(db) if version != self._data_version else None
                tx = Tx(db)
                results = [fn(tx) for fn in fns]
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                raise
        finally:
            if relaxed:
                db.execute("PRAGMA synchronous=FULL")
        return _Committed(results, tx, recount, int(version))

    def _apply(self, done: _Committed) -> None:
        base = self.counts if done.recount is None else done.recount
        tx = done.tx
        self.counts = Counts(
            events=base.events + tx.events,
            backlog_events=base.backlog_events + tx.backlog_events,
            backlog_bytes=base.backlog_bytes + tx.backlog_bytes,
        )
        self._data_version = done.data_version
        self.commits += 1
        self._on_commit(tx.woken, done.recount is not None)
