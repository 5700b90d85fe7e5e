"""The dead-letter filter (:class:`relay.journal.DeadFilter`) that the admin API and the
``deadletters`` command share: a page, a replay and a drop with one filter touch the same
rows; pages follow (seq, sink), so two sinks' letters of one event are never skipped at a
page boundary; counters stay equal to the file. Real SQLite files; an injected clock."""

from __future__ import annotations

from pathlib import Path

from relay.core.delivery import Settlement
from relay.journal import DeadFilter, Journal
from tests.journal.test_journal_backlog import in_memory, on_file
from tests.pipeline.test_pipeline_journal import Clock, mail, to

A = "webhook:a"
B = "webhook:b"


async def kill(journal: Journal, sink: str) -> None:
    rows = await journal.claim(sink, limit=100, due_only=False)
    await journal.settle(sink, [Settlement(d.seq, "dead", 3, 0.0, "500") for d in rows])


async def test_one_filter_pages_replays_and_drops_the_same_rows(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    clock = Clock()
    async with Journal(path, clock=clock) as journal:
        await journal.append("acme", [mail(n) for n in range(3)], route=to(A, B))
        clock.now += 100
        await journal.append("beta", [mail(n, "beta") for n in range(3, 5)], route=to(A))
        await kill(journal, A)
        await kill(journal, B)
        everything = await journal.dead_page(DeadFilter(), limit=100)
        assert len(everything) == 8
        # Pages of 3 by (seq, sink): the two sinks of event 0 split across no gap.
        seen = []
        after = None
        while True:
            page = await journal.dead_page(DeadFilter(), after=after, limit=3)
            seen += page
            if len(page) < 3:
                break
            after = (page[-1].seq, page[-1].sink)
        assert [(d.seq, d.sink) for d in seen] == [(d.seq, d.sink) for d in everything]
        # Filters: tenant, sink, time, event id.
        beta = DeadFilter(tenant="beta")
        assert {d.tenant for d in await journal.dead_page(beta)} == {"beta"}
        assert len(await journal.dead_page(DeadFilter(sink=B))) == 3
        late = DeadFilter(since=clock.now)
        assert len(await journal.dead_page(late)) == 2
        early = DeadFilter(until=clock.now)
        assert len(await journal.dead_page(early)) == 6
        first = everything[0].event_id
        assert len(await journal.dead_page(DeadFilter(event_id=first))) == 2
        assert await journal.dead_page(DeadFilter(type="nothing")) == []
        # Replay the early ones of sink A: 3 rows, back in the backlog.
        assert await journal.replay(where=DeadFilter(sink=A, until=clock.now)) == 3
        assert journal.backlog_events == 3
        assert len(await journal.dead_page(DeadFilter())) == 5
        # Drop beta's: 2 letters, and their events (no other delivery).
        assert await journal.drop_dead(where=beta) == (2, 2)
        assert await journal.dead_page(beta) == []
        # Drop event 0's letter of B: its event stays (A owes it).
        assert await journal.drop_dead(where=DeadFilter(event_id=first)) == (1, 0)
        assert await in_memory(journal) == on_file(path)
        assert (await journal.stats()).events == 3
