"""The :class:`Journal` facade: what the listeners, drainers, supervisor and CLI call.

Where it sits: the only public class of :mod:`relay.journal`. It owns the writer
(:mod:`._writer`: the writing connection, group commit, the counters) and the reader
(:mod:`._reads`: the query-only connection), holds the bounds and the drainers' wakeup
events, and holds the hot-path write functions (append, settle) itself; the operators'
writes live in :mod:`._admin`. See the package docstring for why it is shaped so.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Final, Literal, TypeVar

from relay.core.delivery import Delivery, Settlement
from relay.core.events import Event
from relay.journal import _admin, _listing, _reads
from relay.journal._exceptions import JournalClosed, JournalError, from_sqlite
from relay.journal._filter import DeadFilter
from relay.journal._records import DeadLetter, JournalStats
from relay.journal._schema import PENDING, STATES
from relay.journal._writer import Tx, Writer

__all__ = ["Journal"]

T = TypeVar("T")

_CHUNK: Final = 500  # rows per set-wise statement, well under SQLite's variable limit


def _with_marks(sql: str, count: int, tail: str = "") -> str:
    """``sql (?,?,...) tail``: ``count`` placeholders for bound values, nothing else."""
    return sql + " (" + ",".join("?" * count) + ") " + tail


class Journal:
    """The SQLite journal. Use as ``async with Journal(path, ...) as journal``."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_events: int = 1_000_000,
        max_bytes: int = 1 << 30,
        retention: float = 86400.0,
        dead_retention: float = 7 * 86400.0,
        synchronous: Literal["full", "normal"] = "full",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.retention = retention
        self.dead_retention = dead_retention
        self._clock = clock
        self._writer = Writer(self.path, synchronous=synchronous, on_commit=self._committed)
        self._reader = _reads.Reader(self.path)
        self._closed = False
        self._room = asyncio.Event()  # set after a commit that leaves the backlog in bounds
        self._wakeups: dict[str, asyncio.Event] = {}

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r}, backlog={self.backlog_events})"

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Journal:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def open(self) -> None:
        try:
            await self._writer.open()
            try:
                await self._reader.open()
                # The pages every running relay reads soon (checkpoints, sinks, the
                # pending and dead indexes), read once now on the writer's connection:
                # a damaged one stops the start instead of failing a tenant later.
                await self._writer.call(lambda: _reads.probe(self._writer.connection()))
            except BaseException:
                await self._reader.close()
                await self._writer.close()
                raise
        except sqlite3.Error as exc:
            raise from_sqlite(exc, path=self.path, doing="open") from exc
        except OSError as exc:
            reason = exc.strerror or exc
            raise JournalError(f"cannot open journal {self.path}: {reason}") from exc

    async def close(self) -> None:
        """Finish queued writes, then close. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        await self._writer.drain()
        await self._reader.close()
        await self._writer.close()
        self._room.set()  # a source waiting for capacity hears JournalClosed

    async def _read(self, fn: _reads.Read[T]) -> T:
        if self._closed:
            raise JournalClosed("the journal is closed")
        return await self._reader.run(fn)

    # -- counters, bounds and wakeups --------------------------------------------------

    @property
    def backlog_events(self) -> int:
        """Events some sink still owes (kept by the writer; never scanned)."""
        return self._writer.counts.backlog_events

    @property
    def backlog_bytes(self) -> int:
        return self._writer.counts.backlog_bytes

    @property
    def commits(self) -> int:
        """Transactions committed by this process's writer."""
        return self._writer.commits

    def _committed(self, woken: set[str], foreign: bool) -> None:
        # Called by the writer after each commit, counters already updated. Another
        # process's commit may have revived rows or enabled a sink: every drainer looks.
        for sink in list(self._wakeups) if foreign else woken:
            self.wakeup(sink).set()
        if not self.full:
            self._room.set()

    def wakeup(self, sink: str) -> asyncio.Event:
        """The event set whenever new work may be due for ``sink``."""
        event = self._wakeups.get(sink)
        if event is None:
            event = self._wakeups[sink] = asyncio.Event()
        return event

    @property
    def full(self) -> bool:
        return self.backlog_events >= self.max_events or self.backlog_bytes >= self.max_bytes

    def backpressure_reason(self) -> str | None:
        if self.backlog_events >= self.max_events:
            return f"journal backlog {self.backlog_events} events >= max_events {self.max_events}"
        if self.backlog_bytes >= self.max_bytes:
            return f"journal backlog {self.backlog_bytes} bytes >= max_bytes {self.max_bytes}"
        return None

    async def wait_capacity(self) -> None:
        """Return once the backlog is under its bounds (or the journal closes)."""
        if not self.full:
            return
        while self.full and not self._closed:
            self._room.clear()
            await self._room.wait()
        if self._closed:
            raise JournalClosed("the journal is closed")

    async def recount(self) -> None:
        """Bring the counters up to date with other processes' commits.

        A cheap, empty transaction through the writer: like every transaction it checks
        ``PRAGMA data_version`` and recounts only if another connection committed. The
        supervisor's housekeeping calls it, so that an idle relay notices an operator's
        ``deadletters replay`` too.
        """
        await self._writer.write(lambda tx: None)

    # -- the source's side -------------------------------------------------------------

    async def append(
        self,
        tenant: str,
        events: Sequence[Event],
        *,
        route: Callable[[Event], Sequence[str]],
        checkpoint: int | None = None,
        announced: int | None = None,
        settled: bool = False,
        traceparent: str | None = None,
        tracestate: str | None = None,
        listing: _listing.ListingWrite | None = None,
    ) -> int:
        """Store ``events`` (and the tenant's new Ver) in one durable transaction.

        ``route`` names the sinks each event goes to. Returns how many events were new;
        an id already stored is skipped, so a repeated happening is stored once.
        ``announced``: a directory Ver that listen announced and that is not expanded
        yet (:meth:`directory_pending`); ``settled``: the pending change is done.
        ``traceparent``/``tracestate``: the trace the events belong to (tracing on),
        stored with each and written into its CloudEvent. ``listing``: the change to the
        tenant's stored directory listing these events report (second API).
        """
        now = self._clock()
        if traceparent is None:
            rows = [(event, event.encode(), tuple(route(event))) for event in events]
        else:
            rows = [
                (event, event.encode_traced(traceparent, tracestate), tuple(route(event)))
                for event in events
            ]

        def write(tx: Tx) -> int:
            db = tx.db
            inserted = 0
            for event, body, sinks in rows:
                cursor = db.execute(
                    "INSERT OR IGNORE INTO events (id, tenant, type, routing_key, body, created,"
                    " remaining, traceparent, tracestate) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        event.id,
                        tenant,
                        event.type,
                        event.routing_key,
                        body,
                        now,
                        len(sinks),
                        traceparent,
                        tracestate,
                    ),
                )
                if cursor.rowcount != 1:
                    continue
                seq = cursor.lastrowid
                inserted += 1
                if sinks:
                    tx.backlog(1, len(body))
                    tx.wake(sinks)
                    db.executemany(
                        "INSERT INTO deliveries (sink, seq, updated) VALUES (?, ?, ?)",
                        [(sink, seq, now) for sink in sinks],
                    )
            if checkpoint is not None:
                db.execute(
                    "INSERT INTO checkpoints (tenant, ver, updated) VALUES (?, ?, ?)"
                    " ON CONFLICT (tenant) DO UPDATE SET ver = excluded.ver,"
                    " updated = excluded.updated",
                    (tenant, checkpoint, now),
                )
            if settled:
                db.execute("DELETE FROM directory_pending WHERE tenant = ?", (tenant,))
            elif announced is not None:
                db.execute(
                    "INSERT INTO directory_pending (tenant, target, since) VALUES (?, ?, ?)"
                    " ON CONFLICT (tenant) DO UPDATE SET target = excluded.target",
                    (tenant, announced, now),
                )
            if listing is not None:
                listing(db, now)
            tx.stored(inserted)
            return inserted

        return await self._writer.write(write)

    async def checkpoint(self, tenant: str) -> int | None:
        return await self._read(_reads.checkpoint(tenant))

    async def checkpoints(self) -> dict[str, int]:
        return await self._read(_reads.checkpoints())

    async def directory_pending(self, tenant: str) -> tuple[int, float] | None:
        """The announced, not yet expanded directory Ver of ``tenant`` and since when."""
        return await self._read(_reads.directory_pending(tenant))

    async def listing(self, tenant: str) -> _listing.StoredListing | None:
        """The tenant's stored directory listing (second API); None: none yet."""
        return await self._read(_listing.read(tenant))

    # -- the sinks' side ---------------------------------------------------------------

    async def claim(
        self,
        sink: str,
        *,
        limit: int,
        now: float | None = None,
        skip: Sequence[int] = (),
        due_only: bool = True,
        horizon: float | None = None,
    ) -> list[Delivery]:
        """Up to ``limit`` pending deliveries for ``sink``, oldest first.

        ``skip`` are sequence numbers in flight already. With ``due_only=False`` rows
        waiting for a retry are returned too (an ordered sink looks at its head).
        ``horizon`` (the sink's longest retry delay) makes a row stamped further ahead
        than that due now: the wall clock went back since (see ``effective_due``).
        """
        moment = self._clock() if now is None else now
        return await self._read(
            _reads.claim(
                sink, limit=limit, moment=moment, skip=skip, due_only=due_only, horizon=horizon
            )
        )

    async def next_due(self, sink: str, *, after: float | None = None) -> float | None:
        """When the earliest pending delivery of ``sink`` is due (``None``: none pending).

        With ``after``, only rows due later than that count: a drainer that has claimed
        every row due at ``after`` asks when the next retry falls due, not about the
        rows it has in flight.
        """
        return await self._read(_reads.next_due(sink, after=after))

    async def settle(self, sink: str, updates: Sequence[Settlement]) -> None:
        """Record delivery outcomes for ``sink`` (group-committed with other writes)."""
        if not updates:
            return
        now = self._clock()

        delivered = [u.seq for u in updates if u.state == "delivered" and u.attempted]
        others = [u for u in updates if not (u.state == "delivered" and u.attempted)]

        def write(tx: Tx) -> None:
            db = tx.db
            # The common case, successes, in a few set-wise statements instead of two
            # per row: the journal thread holds the GIL for less time per event.
            for start in range(0, len(delivered), _CHUNK):
                chunk = delivered[start : start + _CHUNK]
                moved = [
                    seq
                    for (seq,) in db.execute(
                        _with_marks(
                            "SELECT seq FROM deliveries WHERE sink = ? AND state = 0 AND seq IN",
                            len(chunk),
                        ),
                        (sink, *chunk),
                    )
                ]
                if not moved:
                    continue
                db.execute(
                    _with_marks(
                        "UPDATE deliveries SET state = 1, attempts = attempts + 1, next_at = 0,"
                        " updated = ? WHERE sink = ? AND seq IN",
                        len(moved),
                    ),
                    (now, sink, *moved),
                )
                for remaining, size in db.execute(
                    _with_marks(
                        "UPDATE events SET remaining = remaining - 1 WHERE seq IN",
                        len(moved),
                        "RETURNING remaining, LENGTH(body)",
                    ),
                    moved,
                ):
                    if remaining == 0:
                        tx.backlog(-1, -int(size))
            for update in others:
                state = STATES[update.state]
                cursor = db.execute(
                    "UPDATE deliveries SET state = ?, attempts = attempts + ?, next_at = ?,"
                    " last_error = COALESCE(?, last_error), updated = ?"
                    " WHERE sink = ? AND seq = ? AND state = 0",
                    (
                        state,
                        1 if update.attempted else 0,
                        update.next_at,
                        update.error,
                        now,
                        sink,
                        update.seq,
                    ),
                )
                if cursor.rowcount == 1 and state != PENDING:
                    row = db.execute(
                        "UPDATE events SET remaining = remaining - 1 WHERE seq = ?"
                        " RETURNING remaining, LENGTH(body)",
                        (update.seq,),
                    ).fetchone()
                    if row is not None and row[0] == 0:
                        tx.backlog(-1, -int(row[1]))

        await self._writer.write(write, durable=False)

    # -- dead letters, endpoints, replay ------------------------------------------------

    async def dead_letters(self, sink: str | None = None, *, limit: int = 1000) -> list[DeadLetter]:
        return await self._read(_reads.dead_letters(sink, limit=limit))

    async def dead_page(
        self, where: DeadFilter, *, after: tuple[int, str] | None = None, limit: int = 100
    ) -> list[DeadLetter]:
        """A page of the dead letters ``where`` matches, after the (seq, sink) cursor."""
        return await self._read(_reads.dead_page(where, after=after, limit=limit))

    async def replay(
        self,
        *,
        sink: str | None = None,
        event_id: str | None = None,
        since: float | None = None,
        include_delivered: bool = False,
        where: DeadFilter | None = None,
    ) -> int:
        """Queue dead letters (or, with ``include_delivered``, delivered events) again:
        those ``where`` matches, else those of ``sink``, ``event_id`` and ``since``."""
        where = where or DeadFilter(sink=sink, event_id=event_id, since=since)
        return await self._writer.write(
            _admin.replay(now=self._clock(), where=where, include_delivered=include_delivered)
        )

    async def retire_orphans(self, configured: Collection[str]) -> dict[str, int]:
        """Retire the pending deliveries of every sink not in ``configured`` to dead
        letters, so they leave the backlog; how many, per such sink (see
        :func:`._admin.retire_orphans`). Call it at start, before any drainer runs."""
        return await self._writer.write(
            _admin.retire_orphans(now=self._clock(), configured=configured)
        )

    async def drop_dead(
        self,
        sink: str | None = None,
        *,
        event_id: str | None = None,
        where: DeadFilter | None = None,
    ) -> tuple[int, int]:
        """Delete the dead letters ``where`` matches (else ``sink``'s, only ``event_id``'s if
        given) and the events left with no delivery: (dead letters, events) deleted."""
        where = where or DeadFilter(sink=sink, event_id=event_id)
        return await self._writer.write(_admin.drop_dead(where=where))

    async def set_disabled(self, sink: str, disabled: bool, reason: str | None = None) -> None:
        await self._writer.write(
            _admin.set_disabled(now=self._clock(), sink=sink, disabled=disabled, reason=reason)
        )

    async def disabled(self, sink: str) -> str | None:
        """The reason ``sink`` is disabled, or ``None`` when it is enabled."""
        return await self._read(_reads.disabled(sink))

    # -- housekeeping and statistics -----------------------------------------------------

    async def prune(self, *, chunk: int = 5000) -> int:
        """Delete fully delivered events past retention (and dead ones past theirs).

        Deletes ``chunk`` events per transaction, so appends and delivery records queue
        behind one short transaction at a time, not behind a day's worth of deletes.
        """
        now = self._clock()
        deleted = 0
        for sql, keep in (
            (_admin.PRUNE_DELIVERED, self.retention),
            (_admin.PRUNE_DEAD, self.dead_retention),
        ):
            while True:
                write = _admin.prune(sql, cutoff=now - keep, chunk=chunk)
                count = await self._writer.write(write, durable=False)
                deleted += count
                if count < chunk:
                    break
        return deleted

    async def stats(self) -> JournalStats:
        """Counts for metrics and the status page. Costs grow with the backlog and the
        dead letters, not with the delivered events kept for retention."""
        sinks, file_bytes = await self._read(_reads.sink_stats)
        counts = self._writer.counts
        return JournalStats(
            events=counts.events,
            backlog_events=counts.backlog_events,
            backlog_bytes=counts.backlog_bytes,
            file_bytes=file_bytes,
            sinks=sinks,
        )

    async def writable(self) -> bool:
        """Whether a real write commits now (see :meth:`write_check`)."""
        return await self.write_check() is None

    async def write_check(self, *, within: float = 2.0) -> str | None:
        """Readiness's proof that the journal takes writes: ``None``, or why not.

        A real write (one row of ``meta`` rewritten, committed through the writer like
        any other write, without an fsync), not a ``SELECT 1``: a full disk, a write
        lock held by another process or a bad page fail it. Waits at most ``within``
        seconds; a write still queued then is committed later all the same.
        """
        stamp = repr(self._clock())

        def probe(tx: Tx) -> None:
            tx.db.execute(
                "INSERT INTO meta (key, value) VALUES ('write_check', ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (stamp,),
            )

        try:
            async with asyncio.timeout(within):
                await self._writer.write(probe, durable=False)
        except TimeoutError:
            return f"no commit within {within:g} s (is another process holding the lock?)"
        except JournalError as exc:
            return exc.reason
        return None
