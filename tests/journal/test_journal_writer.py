"""The writer task is owned: if it dies, its callers hear it instead of waiting for ever."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from relay.journal import JournalError
from relay.journal._writer import Tx, Writer


class Boom(Exception):
    pass


async def test_a_dead_writer_fails_every_waiting_and_later_write(tmp_path: Path) -> None:
    def explode(woken: set[str], foreign: bool) -> None:
        raise Boom("a bug after COMMIT")

    writer = Writer(tmp_path / "j.sqlite3", synchronous="normal", on_commit=explode)
    await writer.open()

    def write(tx: Tx) -> int:
        tx.db.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')")
        return 1

    waiting = [asyncio.ensure_future(writer.write(write)) for _ in range(3)]
    results = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 10)
    assert all(isinstance(r, JournalError) for r in results), results
    assert "Boom" in str(results[0])
    with pytest.raises(JournalError):  # refused at once, not queued behind a dead loop
        await asyncio.wait_for(writer.write(write), 10)
    with pytest.raises(Boom):  # the owner sees the bug itself
        await writer.close()
