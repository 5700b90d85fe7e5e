"""The drainer over a real journal file and the real console sink: how often it reads
the journal (counted, not timed)."""

from __future__ import annotations

import asyncio
import io
from collections import Counter
from pathlib import Path
from typing import Any

from relay.core.delivery import Delivery, DrainPolicy
from relay.journal import Journal
from relay.runtime.drainer import Drainer
from relay.sinks.console import ConsoleSink
from tests.pipeline.test_pipeline_journal import mail, to
from tests.support import eventually


class CountingJournal(Journal):
    """The real journal, counting the reads a drainer makes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reads: Counter[str] = Counter()

    async def claim(self, *args: Any, **kwargs: Any) -> list[Delivery]:
        self.reads["claim"] += 1
        return await super().claim(*args, **kwargs)

    async def next_due(self, *args: Any, **kwargs: Any) -> float | None:
        self.reads["next_due"] += 1
        return await super().next_due(*args, **kwargs)


async def test_a_quiet_drainer_reads_the_journal_once_per_claim(tmp_path: Path) -> None:
    """Events arriving one at a time cost one claim each: a success does not send the
    drainer back to the journal, and the next retry time is asked for once, not after
    every claim (before: about 2.5 claims and 2 next-due reads per event)."""
    out = io.StringIO()
    async with CountingJournal(tmp_path / "j.sqlite3") as journal:
        drainer = Drainer(journal, ConsoleSink(stream=out), DrainPolicy())
        task = asyncio.create_task(drainer.run())
        for n in range(20):
            await journal.append("acme", [mail(n)], route=to("console"))
            await eventually(
                lambda n=n: out.getvalue().count("\n") == n + 1,
                seconds=10,
                what="the next event printed",
            )
        await eventually(
            lambda: journal.backlog_events == 0, seconds=10, what="the backlog drained"
        )
        await drainer.stop(1.0)
        await task
    assert out.getvalue().count("\n") == 20
    # One claim per event, plus the first look and at most a few idle polls.
    assert 20 <= journal.reads["claim"] <= 20 + 4, journal.reads
    assert journal.reads["next_due"] <= 4, journal.reads
