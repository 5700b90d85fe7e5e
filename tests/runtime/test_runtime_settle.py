"""Settle batching over a real journal file: one write per loop iteration, a refused
write answered (not raised) and reported, a bug handed to its owner."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from relay.core.delivery import DrainPolicy, Settlement
from relay.journal import Journal, JournalError
from relay.runtime.drainer import Drainer
from relay.runtime.settle import SettleBatcher
from tests.pipeline.test_pipeline_journal import mail, to
from tests.runtime.test_runtime_drainer import (
    REFUSE_OUTCOMES,
    MemorySink,
    assert_nothing_unhandled,
    sql,
)


class CountingJournal(Journal):
    """The real journal, counting its settle() calls; with ``bug`` set, settle() raises
    it instead (a programming error, not a journal failure)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settles: list[int] = []
        self.bug: Exception | None = None

    async def settle(self, sink: str, updates: Any) -> None:
        if self.bug is not None:
            raise self.bug
        self.settles.append(len(updates))
        await super().settle(sink, updates)


class Outcomes:
    def __init__(self) -> None:
        self.refused: list[JournalError] = []
        self.recorded = 0
        self.crashed: list[BaseException] = []

    def batcher(self, journal: Journal) -> SettleBatcher:
        return SettleBatcher(
            journal,
            "mem",
            refused=self.refused.append,
            recorded=self.recorded_once,
            crashed=self.crashed.append,
        )

    def recorded_once(self) -> None:
        self.recorded += 1


async def seqs(journal: Journal, count: int) -> list[int]:
    await journal.append("acme", [mail(n) for n in range(count)], route=to("mem"))
    return [row.seq for row in await journal.claim("mem", limit=count)]


async def test_settlements_queued_in_one_iteration_share_one_write(tmp_path: Path) -> None:
    async with CountingJournal(tmp_path / "j.sqlite3") as journal:
        outcomes = Outcomes()
        batcher = outcomes.batcher(journal)
        batches = {batcher.record(Settlement(seq, "delivered")) for seq in await seqs(journal, 3)}
        assert len(batches) == 1
        assert await asyncio.gather(*batches) == [None]
        assert journal.settles == [3]
        assert outcomes.recorded == 1
        assert await journal.claim("mem", limit=10) == []
        # The next iteration starts the next batch.
        await journal.append("acme", [mail(9)], route=to("mem"))
        (row,) = await journal.claim("mem", limit=10)
        assert await batcher.record(Settlement(row.seq, "delivered")) is None
        assert journal.settles == [3, 1]


async def test_a_refused_write_is_answered_and_reported_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    async with Journal(path) as journal:
        outcomes = Outcomes()
        batcher = outcomes.batcher(journal)
        (seq,) = await seqs(journal, 1)
        sql(path, REFUSE_OUTCOMES)
        error = await batcher.record(Settlement(seq, "delivered"))
        assert isinstance(error, JournalError)
        assert "injected outcome failure" in str(error)
        assert outcomes.refused == [error]
        assert outcomes.recorded == 0 and outcomes.crashed == []


async def test_a_bug_in_a_flush_reaches_its_owner_even_with_nobody_waiting(
    tmp_path: Path, unhandled: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    async with CountingJournal(tmp_path / "j.sqlite3") as journal:
        outcomes = Outcomes()
        batcher = outcomes.batcher(journal)
        (seq,) = await seqs(journal, 1)
        journal.bug = RuntimeError("settle bug")
        done = batcher.record(Settlement(seq, "delivered"))
        done.cancel()  # its attempts are gone (stop() cancelled them after the grace)
        await batcher.wait()
        assert [str(e) for e in outcomes.crashed] == ["settle bug"]
        assert outcomes.refused == []
    assert_nothing_unhandled(unhandled, caplog)


async def test_a_bug_in_a_flush_propagates_out_of_the_drainer(
    tmp_path: Path, unhandled: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    async with CountingJournal(tmp_path / "j.sqlite3") as journal:
        await journal.append("acme", [mail(0)], route=to("mem"))
        journal.bug = RuntimeError("settle bug")
        drainer = Drainer(journal, MemorySink(), DrainPolicy())
        with pytest.raises(RuntimeError, match="settle bug"):
            await drainer.run()
        assert drainer.in_flight == 0
        assert len(await journal.claim("mem", limit=10)) == 1
    assert_nothing_unhandled(unhandled, caplog)


async def test_a_batch_is_told_once_and_its_rows_stay_counted_until_then(tmp_path: Path) -> None:
    async with CountingJournal(tmp_path / "j.sqlite3") as journal:
        told: list[tuple[list[int], BaseException | None, bool]] = []
        batcher = SettleBatcher(
            journal,
            "mem",
            refused=lambda error: None,
            recorded=lambda: None,
            crashed=lambda error: None,
            settled=lambda updates, error, wake: told.append(
                ([u.seq for u in updates], error, wake)
            ),
        )
        first, second, third = await seqs(journal, 3)
        batcher.record(Settlement(first, "delivered"))
        done = batcher.record(Settlement(second, "pending", next_at=1.0), wake=True)
        assert sorted(batcher) == [first, second] and told == []
        assert await done is None
        assert told == [([first, second], None, True)]
        assert len(batcher) == 0  # out of the flight once told, not before
        journal.bug = RuntimeError("settle bug")
        batcher.record(Settlement(third, "delivered"))
        await batcher.wait()
        ((rows, error, wake),) = told[1:]
        assert rows == [third] and isinstance(error, RuntimeError) and wake is False
        assert len(batcher) == 0  # a bug leaves the row pending, not stuck in flight
