"""``journal salvage``'s engine on real damaged files: every readable event, delivery,
checkpoint and sink flag is copied, a damaged page costs only the rows on it, the new
file is sound and consistent, and a relay on it delivers what was pending."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from relay.app.settings import HttpSettings, JournalSettings, Settings
from relay.app.wiring import build_service
from relay.core.delivery import Settlement
from relay.journal import Journal, JournalError, check_file, salvage_file
from tests.journal.test_journal_corruption import damage, damage_page
from tests.pipeline.test_pipeline_journal import mail, to
from tests.support import eventually
from tests.webhook.conftest import Receiver, hook

EVENTS = 400


async def populated(path: Path) -> None:
    """Pending, retrying, delivered and dead rows on two sinks, two checkpoints, a
    disabled sink."""
    async with Journal(path) as journal:
        for tenant, ver in (("acme", 11), ("beta", 22)):
            await journal.append(
                tenant,
                [mail(n, tenant) for n in range(EVENTS // 2)],
                route=to("webhook:a", "webhook:b"),
                checkpoint=ver,
            )
        rows = await journal.claim("webhook:a", limit=EVENTS)
        await journal.settle("webhook:a", [Settlement(r.seq, "delivered") for r in rows[:150]])
        await journal.settle(
            "webhook:a", [Settlement(r.seq, "dead", error="410 gone") for r in rows[150:170]]
        )
        await journal.settle(
            "webhook:a",
            [Settlement(r.seq, "pending", next_at=5e9, error="503") for r in rows[170:200]],
        )
        await journal.set_disabled("webhook:b", True, "disabled by an operator")


def rows_of(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return {
            "events": db.execute(
                "SELECT seq, id, tenant, type, routing_key, body, created FROM events ORDER BY seq"
            ).fetchall(),
            "deliveries": db.execute(
                "SELECT sink, seq, state, attempts, next_at, last_error, updated FROM deliveries"
                " ORDER BY sink, seq"
            ).fetchall(),
            "checkpoints": db.execute("SELECT tenant, ver, updated FROM checkpoints").fetchall(),
            "sinks": db.execute("SELECT name, disabled, reason, updated FROM sinks").fetchall(),
        }


def leaf_pages(path: Path, name: str) -> list[tuple[int, int]]:
    """(page number, rows on it) of each leaf page of table ``name``."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return [
            (int(page), int(cells))
            for page, cells in db.execute(
                "SELECT pageno, ncell FROM dbstat WHERE name = ? AND pagetype = 'leaf'"
                " ORDER BY pageno",
                (name,),
            )
        ]


def remaining_is_consistent(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db:
        wrong = db.execute(
            "SELECT COUNT(*) FROM events e WHERE remaining != (SELECT COUNT(*) FROM deliveries d"
            " WHERE d.seq = e.seq AND d.state = 0)"
        ).fetchone()[0]
    assert wrong == 0


async def test_one_bad_page_of_events_and_one_of_deliveries_lose_only_their_rows(
    tmp_path: Path,
) -> None:
    source, out = tmp_path / "damaged.sqlite3", tmp_path / "new.sqlite3"
    await populated(source)
    before = rows_of(source)
    event_pages, delivery_pages = leaf_pages(source, "events"), leaf_pages(source, "deliveries")
    bad_event_page, event_cells = event_pages[len(event_pages) // 2]
    bad_delivery_page, delivery_cells = delivery_pages[len(delivery_pages) // 3]
    damage_page(source, bad_event_page)
    damage_page(source, bad_delivery_page)
    assert not check_file(source).ok

    report = await asyncio.to_thread(salvage_file, source, out)

    after = rows_of(out)
    assert set(after["events"]) <= set(before["events"])
    assert len(after["events"]) == EVENTS - event_cells
    assert (report.events.copied, report.events.lost) == (EVENTS - event_cells, event_cells)
    # Every delivery that was readable and whose event survived, exactly as it was.
    assert set(after["deliveries"]) <= set(before["deliveries"])
    read = report.deliveries.copied + report.orphans
    assert read == len(before["deliveries"]) - delivery_cells
    assert report.deliveries.lost == delivery_cells
    assert report.deliveries.copied == len(after["deliveries"])
    lost_seqs = {e[0] for e in before["events"]} - {e[0] for e in after["events"]}
    orphans = [d for d in before["deliveries"] if d[1] in lost_seqs]
    assert report.orphans <= len(orphans)
    assert after["checkpoints"] == before["checkpoints"]
    assert after["sinks"] == before["sinks"]
    assert (report.checkpoints.copied, report.sinks.copied) == (2, 1)
    # The new file is sound, and its counters say what its rows say.
    found = check_file(out)
    assert found.ok, found.problems
    remaining_is_consistent(out)
    async with Journal(out) as journal:
        stats = await journal.stats()
        assert journal.backlog_events == report.backlog
        assert stats.sinks["webhook:a"].pending == report.pending["webhook:a"]
        assert stats.sinks["webhook:b"].disabled
        assert await journal.checkpoints() == {"acme": 11, "beta": 22}
        dead = await journal.dead_letters("webhook:a")
        assert {d.last_error for d in dead} == {"410 gone"}
    assert source.read_bytes()[:16] == b"SQLite format 3\x00", "the damaged file is only read"


@pytest.mark.parametrize("name", ["checkpoints", "sinks", "deliveries_pending", "events_prune"])
async def test_damaged_tables_and_indexes_keep_everything_else(tmp_path: Path, name: str) -> None:
    source, out = tmp_path / "damaged.sqlite3", tmp_path / "new.sqlite3"
    await populated(source)
    before = rows_of(source)
    damage(source, name)

    report = await asyncio.to_thread(salvage_file, source, out)

    after = rows_of(out)
    assert after["events"] == before["events"]
    assert after["deliveries"] == before["deliveries"]
    lost_table = name if name in ("checkpoints", "sinks") else None
    for table in ("checkpoints", "sinks"):
        assert after[table] == ([] if table == lost_table else before[table])
        copied = getattr(report, table)
        assert copied.lost == (len(before[table]) if table == lost_table else 0)
    assert check_file(out).ok
    remaining_is_consistent(out)


def test_salvage_refuses_an_existing_target_the_source_itself_and_a_missing_source(
    tmp_path: Path,
) -> None:
    source = tmp_path / "j.sqlite3"
    asyncio.run(populated(source))
    taken = tmp_path / "taken.sqlite3"
    taken.write_bytes(b"keep me")
    with pytest.raises(JournalError, match="refusing to overwrite"):
        salvage_file(source, taken)
    assert taken.read_bytes() == b"keep me"
    with pytest.raises(JournalError, match="damaged journal itself"):
        salvage_file(source, tmp_path / "." / "j.sqlite3")
    with pytest.raises(JournalError, match="does not exist"):
        salvage_file(tmp_path / "nope.sqlite3", tmp_path / "new.sqlite3")
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"\xa5" * 8192)
    with pytest.raises(JournalError, match=r"nothing to salvage in .*not a database"):
        salvage_file(junk, tmp_path / "new.sqlite3")
    # Nothing left behind but the lock file of the one salvage that got that far (the
    # single-writer guard's file stays: relay.journal._lock).
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "j.sqlite3",
        "junk.sqlite3",
        "junk.sqlite3.lock",
        "taken.sqlite3",
    ]


async def test_a_relay_on_the_salvaged_file_delivers_what_was_pending(
    receiver: Receiver, tmp_path: Path
) -> None:
    """The procedure end to end: a journal with delivered and pending events, its
    checkpoints page damaged; salvaged; a relay on the new file sends exactly the events
    that were pending, once each."""
    source, out = tmp_path / "damaged.sqlite3", tmp_path / "new.sqlite3"
    events = [mail(n) for n in range(30)]
    async with Journal(source) as journal:
        await journal.append("acme", events, route=to("webhook:a"), checkpoint=3)
        rows = await journal.claim("webhook:a", limit=10)
        await journal.settle("webhook:a", [Settlement(r.seq, "delivered") for r in rows])
    damage(source, "checkpoints")

    report = await asyncio.to_thread(salvage_file, source, out)
    assert (report.backlog, report.pending) == (20, {"webhook:a": 20})

    settings = Settings(
        journal=JournalSettings(path=out),
        http=HttpSettings(enabled=False),
        webhooks=[hook(receiver, "a")],
    )
    async with build_service(settings) as running:
        stop = asyncio.Event()
        task = asyncio.create_task(running.service.run(stop))
        try:
            await receiver.wait_for("a", 20)
            await eventually(
                lambda: running.service.journal.backlog_events == 0, what="the backlog drained"
            )
        finally:
            stop.set()
            await task
    sent = [r.headers["webhook-id"] for r in receiver.to("a")]
    assert sorted(sent) == sorted(e.id for e in events[10:])
