"""The journal's in-memory counters (backlog events and bytes, stored events) stay equal to
what the file holds: when a caller is cancelled mid-write, when one write of a batch
fails, and when another process (``exmail-relay deadletters replay``) commits to the same
file. Real SQLite files, a real relay with a real webhook receiver, real processes."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from relay.app.settings import HttpSettings, JournalSettings, Settings
from relay.app.wiring import build_service
from relay.core.delivery import Settlement
from relay.journal import Journal, JournalError
from relay.runtime.supervisor import RelayService
from tests.pipeline.test_pipeline_journal import Clock, mail, to
from tests.support import eventually
from tests.webhook.conftest import Answer, Receiver, hook


def on_file(path: Path) -> tuple[int, int, int]:
    """(backlog events, backlog bytes, events) as the file holds them, counted afresh on
    a connection of its own."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        backlog, size = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM events WHERE remaining > 0"
        ).fetchone()
        (events,) = db.execute("SELECT COUNT(*) FROM events").fetchone()
    return int(backlog), int(size), int(events)


async def in_memory(journal: Journal) -> tuple[int, int, int]:
    return journal.backlog_events, journal.backlog_bytes, (await journal.stats()).events


async def on_writer(journal: Journal, fn: Callable[[sqlite3.Connection], object]) -> None:
    """Run ``fn`` with the writing connection, on the writer's thread (instrumentation)."""
    await journal._writer.call(lambda: fn(journal._writer.connection()))


# -- cancelled callers ---------------------------------------------------------------------


async def test_a_caller_cancelled_while_its_append_is_queued_still_counts(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    async with Journal(path) as journal:
        task = asyncio.create_task(journal.append("acme", [mail(1), mail(2)], route=to("s")))
        await asyncio.sleep(0)  # one turn of the loop: the append is queued, not committed
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await journal.writable()  # the queue is FIFO: the append is committed now
        assert on_file(path)[0] == 2, "a queued write is committed even without its caller"
        assert await in_memory(journal) == on_file(path)


@pytest.mark.parametrize("write", ["append", "settle"])
async def test_a_caller_cancelled_during_its_commit_still_counts(
    tmp_path: Path, write: str
) -> None:
    """The cancellation lands while the writer runs COMMIT: the caller never resumes
    normally, the commit happens, and the counters move with it (they used to be
    moved by the caller after its await, so a cancelled caller skipped them)."""
    path = tmp_path / "j.sqlite3"
    loop = asyncio.get_running_loop()
    async with Journal(path) as journal:
        await journal.append("acme", [mail(1), mail(2), mail(3)], route=to("s"))
        rows = await journal.claim("s", limit=10)
        before = await in_memory(journal)
        if write == "append":
            work = journal.append("acme", [mail(4), mail(5)], route=to("s"))
        else:
            work = journal.settle("s", [Settlement(r.seq, "delivered") for r in rows[:2]])
        task: asyncio.Task[object] = asyncio.ensure_future(work)
        cancelled: list[str] = []

        def at_commit(sql: str) -> None:
            if sql == "COMMIT" and not cancelled:
                cancelled.append(sql)
                loop.call_soon_threadsafe(task.cancel)

        await on_writer(journal, lambda db: db.set_trace_callback(at_commit))
        with pytest.raises(asyncio.CancelledError):
            await task
        await on_writer(journal, lambda db: db.set_trace_callback(None))
        assert cancelled == ["COMMIT"]
        after = on_file(path)
        assert after != before, "the cancelled caller's write was committed"
        assert await in_memory(journal) == after


# -- one failing write in a batch -----------------------------------------------------------


async def test_one_failing_write_fails_alone_and_the_batch_commits(tmp_path: Path) -> None:
    """Four writes share one transaction; one of them breaks a real constraint (an event
    routed twice to the same sink: the deliveries' primary key). The batch is rolled back
    and each write runs again on its own: the other three are committed and answered,
    only the failing caller gets a JournalError, and the counters match the file."""
    path = tmp_path / "j.sqlite3"
    statements: list[str] = []
    async with Journal(path) as journal:
        await journal.append("acme", [mail(1), mail(2)], route=to("s"))
        rows = await journal.claim("s", limit=10)
        await on_writer(journal, lambda db: db.set_trace_callback(statements.append))
        results = await asyncio.gather(
            journal.append("acme", [mail(3)], route=to("s")),
            journal.append("acme", [mail(4), mail(5)], route=to("s", "s")),
            journal.settle("s", [Settlement(rows[0].seq, "delivered")]),
            journal.append("acme", [mail(6)], route=to("s"), checkpoint=9),
            return_exceptions=True,
        )
        await on_writer(journal, lambda db: db.set_trace_callback(None))
        assert results[0] == 1
        assert isinstance(results[1], JournalError)
        assert isinstance(results[1].__cause__, sqlite3.IntegrityError)
        assert results[2] is None
        assert results[3] == 1
        assert statements.count("BEGIN IMMEDIATE") == 5, "one shared, then one per write"
        assert statements.count("ROLLBACK") == 2, "the shared one, then the failing write's"
        pending = [r.event_id for r in await journal.claim("s", limit=10)]
        assert pending == [mail(2).id, mail(3).id, mail(6).id], "mail 4 and 5 rolled back"
        assert await journal.checkpoint("acme") == 9
        assert await in_memory(journal) == on_file(path) == (3, on_file(path)[1], 4)


async def test_a_write_function_that_raises_gets_its_own_exception(tmp_path: Path) -> None:
    """A programming error in a write function reaches its caller unchanged (not wrapped);
    the write queued beside it is committed and counted."""
    path = tmp_path / "j.sqlite3"
    async with Journal(path) as journal:

        def broken(tx: object) -> None:
            raise ZeroDivisionError("bug")

        results = await asyncio.gather(
            journal._writer.write(broken),
            journal.append("acme", [mail(1)], route=to("s")),
            return_exceptions=True,
        )
        assert isinstance(results[0], ZeroDivisionError)
        assert results[1] == 1
        assert await in_memory(journal) == on_file(path) == (1, on_file(path)[1], 1)


# -- another connection's commits -----------------------------------------------------------


async def dead(journal: Journal, sink: str, count: int) -> None:
    """Append ``count`` events for ``sink`` and let them all go dead."""
    await journal.append("acme", [mail(n) for n in range(count)], route=to(sink))
    rows = await journal.claim(sink, limit=count)
    await journal.settle(sink, [Settlement(r.seq, "dead", error="HTTP 500") for r in rows])


async def test_another_connections_replay_is_counted_before_the_next_write(
    tmp_path: Path,
) -> None:
    """A second Journal on the file (what the CLI opens) revives dead rows; the first
    one's next transaction sees PRAGMA data_version change and recounts in it, so
    delivering the revived rows brings the backlog to 0, not below."""
    path = tmp_path / "j.sqlite3"
    async with Journal(path) as relay:
        await dead(relay, "s", 20)
        assert relay.backlog_events == 0
        for _ in range(3):
            async with Journal(path) as operator:
                assert await operator.replay(sink="s") == 20
            rows = await relay.claim("s", limit=100)
            assert len(rows) == 20
            await relay.settle("s", [Settlement(r.seq, "dead", error="again") for r in rows])
            assert await in_memory(relay) == on_file(path) == (0, 0, 20)


async def test_recount_picks_up_another_process_when_idle(tmp_path: Path) -> None:
    """No write of its own: ``recount()`` (called by housekeeping) notices the other
    connection's commits, wakes the drainers and keeps the event total right."""
    path = tmp_path / "j.sqlite3"
    clock = Clock()
    async with Journal(path, clock=clock, retention=10) as relay:
        await dead(relay, "s", 5)
        wake = relay.wakeup("s")
        wake.clear()
        async with Journal(path, clock=clock) as operator:
            assert await operator.replay(sink="s") == 5
            await operator.append("acme", [mail(100)], route=to("s"))
        assert await in_memory(relay) == (0, 0, 5), "nothing noticed before a transaction"
        await relay.recount()
        assert await in_memory(relay) == on_file(path)
        assert relay.backlog_events == 6
        assert wake.is_set(), "another process may have revived rows: the drainer looks"
        await relay.recount()
        assert await in_memory(relay) == on_file(path), "no change, no drift"
        rows = await relay.claim("s", limit=10)
        await relay.settle("s", [Settlement(r.seq, "delivered") for r in rows])
        clock.now += 60
        async with Journal(path, clock=clock, retention=10) as operator:
            assert await operator.prune() == 6
        await relay.recount()
        assert await in_memory(relay) == on_file(path) == (0, 0, 0)


async def test_another_processs_replay_can_fill_the_journal(tmp_path: Path) -> None:
    """The recount also moves the bound: revived rows past max_events hold the source."""
    path = tmp_path / "j.sqlite3"
    async with Journal(path, max_events=3) as relay:
        await dead(relay, "s", 3)
        assert not relay.full
        async with Journal(path) as operator:
            await operator.replay(sink="s")
        await relay.recount()
        assert relay.full
        waiter = asyncio.create_task(relay.wait_capacity())
        rows = await relay.claim("s", limit=1)
        await relay.settle("s", [Settlement(rows[0].seq, "delivered")])
        await asyncio.wait_for(waiter, 5)
        assert relay.backlog_events == 2


async def test_an_idle_relay_counts_another_processs_replay(tmp_path: Path) -> None:
    """No drainer writes and no source appends: the supervisor's housekeeping recount is
    what brings the replayed rows into the backlog (and the bound, and /status.json)."""
    path = tmp_path / "j.sqlite3"
    async with Journal(path) as journal:
        await dead(journal, "s", 5)
        service = RelayService(journal=journal, listeners=[], drainers=[], stats_interval=0.01)
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(stop))
        try:
            async with Journal(path) as operator:
                assert await operator.replay(sink="s") == 5
            await eventually(lambda: journal.backlog_events == 5, what="the replay counted")
            status = await service.status()
            assert status.journal.backlog_events == 5
            assert (journal.backlog_events, journal.backlog_bytes) == on_file(path)[:2]
        finally:
            stop.set()
            await task


# -- schema 2 -> 3 -------------------------------------------------------------------------


def schema_of(path: Path) -> tuple[str, set[str]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        (schema,) = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        indexes = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
    return str(schema), indexes


async def test_schema_2_journal_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    async with Journal(path) as journal:
        await journal.append("acme", [mail(1), mail(2), mail(3)], route=to("s"))
        rows = await journal.claim("s", limit=1)
        await journal.settle("s", [Settlement(rows[0].seq, "delivered")])
    with contextlib.closing(sqlite3.connect(path)) as db, db:  # what schema 2 left behind
        db.execute("DROP INDEX events_backlog")
        db.execute("UPDATE meta SET value = '2' WHERE key = 'schema'")
    assert schema_of(path) == ("2", schema_of(path)[1] - {"events_backlog"})
    async with Journal(path) as journal:
        assert await in_memory(journal) == on_file(path) == (2, on_file(path)[1], 3)
        assert [r.event_id for r in await journal.claim("s", limit=10)] == [
            mail(2).id,
            mail(3).id,
        ]
    schema, indexes = schema_of(path)
    assert schema == "5"
    assert "events_backlog" in indexes
    with contextlib.closing(sqlite3.connect(path)) as db:
        plan = db.execute(
            "EXPLAIN QUERY PLAN SELECT COUNT(*) FROM events"
            " INDEXED BY events_backlog WHERE remaining > 0"
        ).fetchall()
    assert "events_backlog" in str(plan)


# -- the reported bug, end to end -----------------------------------------------------------


@contextlib.asynccontextmanager
async def sampling(journal: Journal) -> AsyncIterator[list[int]]:
    """Every value of ``journal.backlog_events`` seen, sampled each few milliseconds."""
    seen: list[int] = []

    async def sample() -> None:
        while True:
            seen.append(journal.backlog_events)
            await asyncio.sleep(0.002)

    task = asyncio.ensure_future(sample())
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def replay_from_another_process(path: Path, endpoint: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "relay",
        "deadletters",
        "replay",
        "--journal",
        str(path),
        "--endpoint",
        endpoint,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, (out, err)
    return err.decode()


@pytest.mark.slow
async def test_replays_from_another_process_keep_the_running_relays_backlog_right(
    receiver: Receiver, tmp_path: Path
) -> None:
    """The report: with a relay running, ``exmail-relay deadletters replay`` from another
    process revived dead rows that the relay then delivered, and its backlog count went
    0 -> -20 -> -40 -> -60, loosening the max_events bound. Now it is never negative and
    comes back to exactly 0 after each replay is drained."""
    path = tmp_path / "relay.sqlite3"
    receiver.script("flaky", default=Answer(status=500))
    settings = Settings(
        journal=JournalSettings(path=path),
        http=HttpSettings(enabled=False),
        webhooks=[hook(receiver, "flaky", retry_schedule=[0.01], jitter=0)],
    )
    async with build_service(settings) as running:
        journal = running.service.journal
        stop = asyncio.Event()
        task = asyncio.create_task(running.service.run(stop))

        async def settled(dead: int) -> bool:
            stats = (await journal.stats()).sinks.get("webhook:flaky")
            if stats is None:  # nothing pending, dead or disabled
                return dead == 0
            return stats.pending == 0 and stats.dead == dead

        def zero() -> bool:
            return journal.backlog_events == 0

        try:
            async with sampling(journal) as seen:
                await journal.append(
                    "acme", [mail(n) for n in range(20)], route=to("webhook:flaky")
                )
                await eventually(lambda: settled(20), what="20 dead letters")
                await eventually(zero, what="the backlog counter back to 0")
                for n in range(3):
                    if n == 2:
                        receiver.defaults["flaky"] = Answer(status=200)
                    told = await replay_from_another_process(path, "flaky")
                    assert "20 dead letter(s)" in told
                    await eventually(
                        functools.partial(settled, 0 if n == 2 else 20), what="the replay settled"
                    )
                    await eventually(zero, seconds=5, what="the backlog counter back to 0")
                assert min(seen) >= 0, f"the backlog counter went to {min(seen)}"
                assert max(seen) == 20, "the sampler saw the appended events"
        finally:
            stop.set()
            await task
    assert len([r for r in receiver.to("flaky") if r.status == 200]) == 20
    assert on_file(path)[:2] == (0, 0)
