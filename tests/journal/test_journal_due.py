"""The claim's SQL applies the same due-time rule as the pure core's ``effective_due``:
a pending row stamped further ahead than the sink's horizon is due now. Real file."""

from __future__ import annotations

from pathlib import Path

from relay.core.delivery import Settlement, effective_due
from relay.journal import Journal
from tests.pipeline.test_pipeline_journal import Clock, mail, to

HORIZON = 30.0
# Stamps relative to the claim's moment: past, now, just ahead, at the horizon, beyond
# it by a hair, and the hour (a row stamped before the clock went back).
AHEAD = [-5.0, 0.0, 3.0, HORIZON, HORIZON + 0.5, 3600.0 + 3.0]


async def test_claim_with_a_horizon_takes_exactly_the_rows_effective_due_calls_due(
    tmp_path: Path,
) -> None:
    clock = Clock()
    now = clock.now
    async with Journal(tmp_path / "j.sqlite3", clock=clock) as journal:
        await journal.append("acme", [mail(n) for n in range(len(AHEAD))], route=to("s"))
        rows = await journal.claim("s", limit=10)
        stamps = {row.seq: now + ahead for row, ahead in zip(rows, AHEAD, strict=True)}
        await journal.settle(
            "s", [Settlement(seq, "pending", next_at=at, error="x") for seq, at in stamps.items()]
        )
        expected = [seq for seq, at in stamps.items() if effective_due(at, now, HORIZON) <= now]
        claimed = await journal.claim("s", limit=10, now=now, horizon=HORIZON)
        assert [row.seq for row in claimed] == expected
        # Without a horizon the hour-ahead row waits for its stamp (how it stalled).
        plain = await journal.claim("s", limit=10, now=now)
        assert [row.seq for row in plain] == expected[:2]
        assert len(expected) == 4
