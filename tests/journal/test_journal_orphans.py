"""Pending deliveries of sinks no longer configured (orphans): retired to dead letters at
start, out of the backlog with counters equal to the file, dropped, replayed, pruned after
``dead_retention``. Real SQLite files; an injected clock."""

from __future__ import annotations

from pathlib import Path

from relay.core.delivery import Settlement
from relay.journal import Journal
from tests.journal.test_journal_backlog import in_memory, on_file
from tests.pipeline.test_pipeline_journal import Clock, mail, to

GONE = "webhook:gone"
KEPT = "webhook:kept"


async def test_retire_moves_orphans_out_of_the_backlog_with_counters_equal_to_the_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.sqlite3"
    clock = Clock()
    async with Journal(path, max_events=40, clock=clock) as journal:
        # The issue: 40 rows of a dead endpoint, then that endpoint left the config.
        await journal.append("acme", [mail(n) for n in range(40)], route=to(GONE))
        await journal.append("acme", [mail(n) for n in range(40, 45)], route=to(GONE, KEPT))
        await journal.append("acme", [mail(n) for n in range(45, 47)], route=to("other"))
        assert journal.full, "the orphans hold the bound"
        clock.now += 5
        retired = await journal.retire_orphans({KEPT, "amqp"})
        assert retired == {GONE: 45, "other": 2}
        assert await in_memory(journal) == on_file(path)
        assert journal.backlog_events == 5, "events still owed to the configured sink"
        assert not journal.full
        letters = await journal.dead_letters(GONE)
        assert len(letters) == 45
        errors = {letter.last_error for letter in letters}
        assert errors == {'sink "webhook:gone" is no longer configured'}
        assert {letter.updated for letter in letters} == {clock.now}
        assert len(await journal.claim(KEPT, limit=100)) == 5, "the kept sink's rows untouched"
        assert await journal.claim(GONE, limit=100, due_only=False) == []
        stats = await journal.stats()
        assert (stats.sinks[GONE].pending, stats.sinks[GONE].dead) == (0, 45)
        assert await journal.retire_orphans({KEPT, "amqp"}) == {}, "nothing left to retire"
    async with Journal(path) as journal:  # a fresh open counts the file
        assert journal.backlog_events == 5


async def test_nothing_is_retired_while_every_sink_is_configured(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    async with Journal(path) as journal:
        await journal.append("acme", [mail(1), mail(2)], route=to(GONE, KEPT))
        assert await journal.retire_orphans({GONE, KEPT}) == {}
        assert journal.backlog_events == 2
        assert await journal.dead_letters() == []


async def test_retired_orphans_replay_to_a_sink_that_came_back(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    async with Journal(path) as journal:
        await journal.append("acme", [mail(n) for n in range(3)], route=to(GONE))
        await journal.retire_orphans({KEPT})
        assert journal.backlog_events == 0
        assert await journal.replay(sink=GONE) == 3
        assert await in_memory(journal) == on_file(path)
        rows = await journal.claim(GONE, limit=10)
        await journal.settle(GONE, [Settlement(r.seq, "delivered") for r in rows])
        assert await in_memory(journal) == on_file(path) == (0, 0, 3)


async def test_drop_deletes_dead_letters_and_events_left_without_deliveries(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.sqlite3"
    async with Journal(path) as journal:
        await journal.append("acme", [mail(n) for n in range(4)], route=to(GONE))
        await journal.append("acme", [mail(4), mail(5)], route=to(GONE, KEPT))
        await journal.retire_orphans({KEPT})
        one = mail(0).id
        assert await journal.drop_dead(GONE, event_id=one) == (1, 1)
        assert [d.event_id for d in await journal.dead_letters(GONE)] == [
            mail(n).id for n in range(1, 6)
        ]
        assert await in_memory(journal) == on_file(path)
        assert on_file(path)[::2] == (2, 5), "backlog 2 (owed to the kept sink), 5 events"
        # The rest: events 4 and 5 stay (the kept sink still owes them), 1-3 go.
        assert await journal.drop_dead(GONE) == (5, 3)
        assert await journal.dead_letters(GONE) == []
        assert await in_memory(journal) == on_file(path)
        assert on_file(path)[::2] == (2, 2)
        assert len(await journal.claim(KEPT, limit=10)) == 2
        assert await journal.drop_dead(GONE) == (0, 0)


async def test_retired_orphans_are_pruned_after_dead_retention(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    clock = Clock()
    async with Journal(path, retention=60, dead_retention=3600, clock=clock) as journal:
        await journal.append("acme", [mail(n) for n in range(5)], route=to(GONE))
        await journal.retire_orphans({KEPT})
        clock.now += 600  # past retention, not past dead_retention: kept for replay
        assert await journal.prune() == 0
        assert len(await journal.dead_letters(GONE)) == 5
        clock.now += 3600
        assert await journal.prune() == 5
        assert await journal.dead_letters(GONE) == []
        assert await in_memory(journal) == on_file(path) == (0, 0, 0)
