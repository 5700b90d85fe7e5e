"""The SQLite journal on a real file: idempotence, checkpoints, bounds, dead letters."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from relay.core import events as ev
from relay.core.delivery import Settlement
from relay.journal import Journal, JournalClosed

NOW = datetime(2026, 11, 28, tzinfo=UTC)


def mail(n: int, tenant: str = "acme") -> ev.Event:
    return ev.mail_new(
        tenant=tenant,
        user=f"u{n}@x.com",
        mail_id=f"M{n}",
        sender="s@x.com",
        receiver=f"u{n}@x.com",
        subject=f"subject {n}",
        summary="",
        unread=n,
        now=NOW,
    )


def to(*sinks: str):  # type: ignore[no-untyped-def]
    return lambda _event: sinks


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_append_is_idempotent_and_checkpoint_is_atomic(tmp_path: Path) -> None:
    async with Journal(tmp_path / "j.sqlite3") as journal:
        assert await journal.checkpoint("acme") is None
        assert await journal.append("acme", [mail(1), mail(2)], route=to("amqp"), checkpoint=7) == 2
        assert await journal.append("acme", [mail(2), mail(3)], route=to("amqp")) == 1
        assert await journal.checkpoint("acme") == 7
        assert journal.backlog_events == 3
        rows = await journal.claim("amqp", limit=10)
        assert [r.event_id for r in rows] == [mail(1).id, mail(2).id, mail(3).id]
        assert rows[0].body == mail(1).encode()
        assert rows[0].routing_key == "acme.mail.new"
    # Everything committed survives a close and reopen.
    async with Journal(tmp_path / "j.sqlite3") as journal:
        assert await journal.checkpoint("acme") == 7
        assert journal.backlog_events == 3
        assert len(await journal.claim("amqp", limit=10)) == 3


async def test_each_sink_drains_on_its_own(tmp_path: Path) -> None:
    async with Journal(tmp_path / "j.sqlite3") as journal:
        await journal.append("acme", [mail(1), mail(2)], route=to("amqp", "webhook:a"))
        first = await journal.claim("amqp", limit=10)
        await journal.settle("amqp", [Settlement(r.seq, "delivered") for r in first])
        assert await journal.claim("amqp", limit=10) == []
        assert len(await journal.claim("webhook:a", limit=10)) == 2
        assert journal.backlog_events == 2, "an event is backlog until every sink is done"
        hook = await journal.claim("webhook:a", limit=10)
        await journal.settle("webhook:a", [Settlement(r.seq, "delivered") for r in hook])
        assert journal.backlog_events == 0
        assert journal.backlog_bytes == 0
        stats = await journal.stats()
        assert stats.sinks == {}, "nothing pending, dead or disabled"
        assert stats.events == 2, "delivered events stay for retention"


async def test_pending_respects_retry_time_and_in_flight_rows(tmp_path: Path) -> None:
    clock = Clock()
    async with Journal(tmp_path / "j.sqlite3", clock=clock) as journal:
        await journal.append("acme", [mail(1), mail(2), mail(3)], route=to("s"))
        rows = await journal.claim("s", limit=10)
        await journal.settle(
            "s", [Settlement(rows[0].seq, "pending", next_at=clock.now + 60, error="x")]
        )
        due = await journal.claim("s", limit=10, skip=[rows[1].seq])
        assert [r.seq for r in due] == [rows[2].seq]
        assert await journal.next_due("s") == 0.0
        assert await journal.next_due("s", after=clock.now) == clock.now + 60
        assert await journal.next_due("s", after=clock.now + 60) is None
        head = await journal.claim("s", limit=1, due_only=False)
        assert head[0].seq == rows[0].seq
        assert head[0].attempts == 1
        assert head[0].next_at == clock.now + 60
        clock.now += 61
        assert [r.seq for r in await journal.claim("s", limit=1)] == [rows[0].seq]


async def test_dead_letters_replay_and_disable(tmp_path: Path) -> None:
    async with Journal(tmp_path / "j.sqlite3") as journal:
        await journal.append("acme", [mail(1), mail(2)], route=to("webhook:a"))
        rows = await journal.claim("webhook:a", limit=10)
        await journal.settle("webhook:a", [Settlement(rows[0].seq, "dead", error="HTTP 500")])
        assert journal.backlog_events == 1
        dead = await journal.dead_letters("webhook:a")
        assert [(d.event_id, d.last_error, d.attempts) for d in dead] == [
            (mail(1).id, "HTTP 500", 1)
        ]
        assert await journal.replay(sink="webhook:a", event_id=mail(1).id) == 1
        assert await journal.dead_letters() == []
        assert journal.backlog_events == 2
        again = await journal.claim("webhook:a", limit=10)
        assert [r.event_id for r in again] == [mail(1).id, mail(2).id]
        assert again[0].attempts == 0
        await journal.set_disabled("webhook:a", True, "HTTP 410")
        assert await journal.disabled("webhook:a") == "HTTP 410"
        await journal.set_disabled("webhook:a", False)
        assert await journal.disabled("webhook:a") is None


async def test_bound_blocks_the_source_until_sinks_drain(tmp_path: Path) -> None:
    async with Journal(tmp_path / "j.sqlite3", max_events=2) as journal:
        await journal.append("acme", [mail(1), mail(2)], route=to("s"))
        assert journal.full
        assert "max_events" in (journal.backpressure_reason() or "")
        waiter = asyncio.create_task(journal.wait_capacity())
        await asyncio.sleep(0.05)
        assert not waiter.done()
        rows = await journal.claim("s", limit=1)
        await journal.settle("s", [Settlement(rows[0].seq, "delivered")])
        await asyncio.wait_for(waiter, 2)
        assert not journal.full


async def test_unrouted_events_are_not_backlog(tmp_path: Path) -> None:
    async with Journal(tmp_path / "j.sqlite3", max_events=1) as journal:
        await journal.append("acme", [mail(1), mail(2)], route=to())
        assert journal.backlog_events == 0
        assert not journal.full


async def test_prune_keeps_undelivered_and_recent_events(tmp_path: Path) -> None:
    clock = Clock()
    async with Journal(tmp_path / "j.sqlite3", retention=100, clock=clock) as journal:
        await journal.append("acme", [mail(1), mail(2)], route=to("s"))
        rows = await journal.claim("s", limit=10)
        await journal.settle("s", [Settlement(rows[0].seq, "delivered")])
        assert await journal.prune() == 0, "inside retention nothing goes"
        clock.now += 101
        assert await journal.prune() == 1
        assert (await journal.stats()).events == 1
        assert [r.seq for r in await journal.claim("s", limit=10)] == [rows[1].seq]


async def test_concurrent_writes_share_commits(tmp_path: Path) -> None:
    async with Journal(tmp_path / "j.sqlite3") as journal:
        await asyncio.gather(
            *(journal.append("acme", [mail(n)], route=to("s")) for n in range(200))
        )
        assert journal.backlog_events == 200
        assert journal.commits < 200, "group commit batches queued writes"


async def test_closed_journal_refuses_work(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    await journal.open()
    await journal.close()
    await journal.close()
    with pytest.raises(JournalClosed):
        await journal.append("acme", [mail(1)], route=to("s"))
    with pytest.raises(JournalClosed):
        await journal.checkpoint("acme")


async def test_rows_waiting_for_a_retry_do_not_hide_due_rows_behind_them(tmp_path: Path) -> None:
    clock = Clock()
    async with Journal(tmp_path / "j.sqlite3", clock=clock) as journal:
        await journal.append("acme", [mail(n) for n in range(300)], route=to("s"))
        rows = await journal.claim("s", limit=300)
        waiting = [
            Settlement(r.seq, "pending", next_at=clock.now + 600, error="x") for r in rows[:250]
        ]
        await journal.settle("s", waiting)
        due = await journal.claim("s", limit=10, skip=[rows[250].seq])
        assert [r.seq for r in due] == [r.seq for r in rows[251:261]]


async def test_recording_a_delivery_twice_counts_it_once(tmp_path: Path) -> None:
    async with Journal(tmp_path / "j.sqlite3") as journal:
        await journal.append("acme", [mail(n) for n in range(3)], route=to("a", "b"))
        rows = await journal.claim("a", limit=10)
        done = [Settlement(r.seq, "delivered") for r in rows]
        await asyncio.gather(journal.settle("a", done), journal.settle("a", done[:2]))
        assert journal.backlog_events == 3, "sink b still owes all three"
        stats = (await journal.stats()).sinks
        assert "a" not in stats, "sink a owes nothing"
        assert stats["b"].pending == 3
        await journal.settle("b", [Settlement(r.seq, "delivered") for r in rows])
        await journal.settle("b", [Settlement(rows[0].seq, "delivered")])
        assert journal.backlog_events == 0
        assert journal.backlog_bytes == 0


# -- cost that must not grow with history ------------------------------------------------
#
# Counted in SQLite virtual-machine instructions (a progress handler on the journal's own
# connection), not timed: the figures are the same on a loaded machine.

STEP = 50


async def vm_steps(journal: Journal, work: Callable[[], Awaitable[object]]) -> int:
    """SQLite VM instructions the journal's connection runs while ``work`` runs."""
    ticks = 0

    def tick() -> int:
        nonlocal ticks
        ticks += 1
        return 0  # go on

    # Both connections: the writer's (on its thread) and the reader's (on its own).
    await journal._writer.call(
        lambda: journal._writer.connection().set_progress_handler(tick, STEP)
    )
    await journal._reader.run(lambda db: db.set_progress_handler(tick, STEP))
    try:
        await work()
    finally:
        await journal._writer.call(
            lambda: journal._writer.connection().set_progress_handler(None, 0)
        )
        await journal._reader.run(lambda db: db.set_progress_handler(None, 0))
    return ticks * STEP


async def deliver_all(journal: Journal, sink: str) -> None:
    while rows := await journal.claim(sink, limit=500):
        await journal.settle(sink, [Settlement(r.seq, "delivered") for r in rows])


async def drainer_queries(journal: Journal) -> None:
    assert len(await journal.claim("amqp", limit=10)) == 10
    assert await journal.next_due("amqp") is not None
    stats = await journal.stats()
    assert stats.sinks["amqp"].pending == 10


async def test_drainer_queries_do_not_grow_with_delivered_history(tmp_path: Path) -> None:
    """The drainer's queries and the stats read the backlog, not the delivered events
    kept for retention (schema 1 scanned every delivered row of the sink per claim)."""
    async with Journal(tmp_path / "fresh.sqlite3") as fresh:
        await fresh.append("acme", [mail(n) for n in range(10)], route=to("amqp"))
        baseline = await vm_steps(fresh, lambda: drainer_queries(fresh))
    async with Journal(tmp_path / "old.sqlite3") as old:
        await old.append("acme", [mail(n) for n in range(3000)], route=to("amqp"))
        await deliver_all(old, "amqp")
        await old.append("acme", [mail(n) for n in range(3000, 3010)], route=to("amqp"))
        with_history = await vm_steps(old, lambda: drainer_queries(old))
    assert with_history < 2 * baseline + 1000, (baseline, with_history)


async def prune_cost(tmp_path: Path, events: int) -> int:
    clock = Clock()
    async with Journal(tmp_path / f"p{events}.sqlite3", retention=10, clock=clock) as journal:
        await journal.append("acme", [mail(n) for n in range(events)], route=to("a", "b"))
        await deliver_all(journal, "a")
        await deliver_all(journal, "b")
        clock.now += 60
        pruned = 0

        async def prune() -> None:
            nonlocal pruned
            pruned = await journal.prune()

        steps = await vm_steps(journal, prune)
        assert pruned == events
        assert (await journal.stats()).events == 0
    return steps


async def test_prune_cost_grows_linearly_with_the_events_pruned(tmp_path: Path) -> None:
    """Deleting an event cascades to its deliveries through an index on seq (schema 1
    had none: each deleted event scanned the whole deliveries table)."""
    small, large = await prune_cost(tmp_path, 250), await prune_cost(tmp_path, 1000)
    assert large < 6 * small, (small, large)  # 4x the events: ~4x linear, ~16x quadratic


async def test_prune_deletes_in_chunks_and_keeps_the_event_count(tmp_path: Path) -> None:
    clock = Clock()
    async with Journal(tmp_path / "j.sqlite3", retention=10, clock=clock) as journal:
        await journal.append("acme", [mail(n) for n in range(25)], route=to("a"))
        await deliver_all(journal, "a")
        clock.now += 60
        await journal.append("acme", [mail(n) for n in range(25, 30)], route=to("a"))
        commits = journal.commits
        assert await journal.prune(chunk=10) == 25
        assert journal.commits - commits >= 3, "one transaction per chunk"
        assert (await journal.stats()).events == 5
    async with Journal(tmp_path / "j.sqlite3") as journal:
        assert (await journal.stats()).events == 5, "counted again at open"


async def test_schema_1_journal_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    async with Journal(path) as journal:
        await journal.append("acme", [mail(1), mail(2)], route=to("amqp"))
    with sqlite3.connect(path) as db:  # what schema 1 left behind
        db.execute("CREATE INDEX deliveries_state ON deliveries (sink, state, seq)")
        db.execute("DROP INDEX deliveries_pending")
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
    async with Journal(path) as journal:
        assert [r.event_id for r in await journal.claim("amqp", limit=10)] == [
            mail(1).id,
            mail(2).id,
        ]
    with sqlite3.connect(path) as db:
        indexes = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
        (schema,) = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    assert "deliveries_pending" in indexes
    assert "deliveries_state" not in indexes
    assert schema == "5"


async def test_outcome_only_commits_skip_the_fsync_and_restore_full(tmp_path: Path) -> None:
    """A batch of delivery outcomes commits under synchronous=NORMAL (no fsync); appends
    commit under FULL; the outcome is kept across a reopen."""
    path = tmp_path / "j.sqlite3"
    statements: list[str] = []
    async with Journal(path) as journal:
        await journal._writer.call(
            lambda: journal._writer.connection().set_trace_callback(statements.append)
        )
        await journal.append("acme", [mail(1), mail(2)], route=to("amqp"))
        appended = list(statements)
        rows = await journal.claim("amqp", limit=10)
        statements.clear()
        await journal.settle("amqp", [Settlement(rows[0].seq, "delivered")])
        recorded = list(statements)
        await journal._writer.call(lambda: journal._writer.connection().set_trace_callback(None))
    assert not any("synchronous" in sql for sql in appended), appended
    assert recorded[0] == "PRAGMA synchronous=NORMAL"
    assert recorded[-2:] == ["COMMIT", "PRAGMA synchronous=FULL"]
    async with Journal(path) as journal:
        assert [r.event_id for r in await journal.claim("amqp", limit=10)] == [mail(2).id]
