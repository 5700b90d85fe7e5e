"""A journal file damaged on disk: real SQLite files with the page of one table or index
overwritten with garbage. Reads raise :class:`JournalCorrupt` naming the file and the
recovery; opening refuses the file; ``run`` says so in one line; housekeeping and the
listeners survive a page that goes bad while the relay runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from pathlib import Path

import pytest

from relay.app.settings import HttpSettings, JournalSettings, Settings, TenantSettings
from relay.app.wiring import build_service
from relay.cli import main
from relay.core.backoff import Backoff
from relay.core.delivery import Delivered, Delivery, DrainPolicy, Outcome, Settlement
from relay.emulator import Emulator
from relay.journal import Journal, JournalCorrupt
from relay.runtime.drainer import Drainer
from relay.runtime.supervisor import RelayService
from tests.pipeline.test_pipeline_journal import mail, to
from tests.support import eventually

GARBAGE = b"\xa5"


def page_size(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute("PRAGMA page_size").fetchone()[0])


def damage_page(path: Path, page: int) -> None:
    """Overwrite page ``page`` (1-based) of ``path`` with garbage, after moving the WAL
    into the file (so no newer copy of the page survives there)."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        (size,) = db.execute("PRAGMA page_size").fetchone()
    with path.open("r+b") as file:
        file.seek((page - 1) * size)
        file.write(GARBAGE * size)


def damage(path: Path, name: str) -> None:
    """Overwrite the root page of table or index ``name``."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        (root,) = db.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = ?", (name,)
        ).fetchone()
    damage_page(path, int(root))


async def filled(path: Path, events: int = 40) -> None:
    """A journal with pending, delivered and dead rows, a checkpoint and a disabled sink."""
    async with Journal(path) as journal:
        await journal.append(
            "acme", [mail(n) for n in range(events)], route=to("s", "t"), checkpoint=7
        )
        rows = await journal.claim("s", limit=events // 2)
        await journal.settle("s", [Settlement(r.seq, "delivered") for r in rows[:5]])
        await journal.settle("s", [Settlement(r.seq, "dead", error="gone") for r in rows[5:8]])
        await journal.set_disabled("t", True, "410 Gone")


def assert_names_the_recovery(error: BaseException, path: Path) -> None:
    text = str(error)
    assert str(path) in text
    assert "journal check" in text
    assert "journal salvage" in text


# -- reads and open ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "read"),
    [
        ("checkpoints", lambda j: j.checkpoint("acme")),
        ("deliveries_pending", lambda j: j.claim("s", limit=10)),
        ("sinks", lambda j: j.stats()),
        ("deliveries_dead", lambda j: j.dead_letters()),
    ],
)
async def test_a_read_of_a_damaged_page_raises_journal_corrupt(
    tmp_path: Path, name: str, read: object
) -> None:
    """The page goes bad while the journal is open (it passed the check at open): the
    read raises the journal's error, not SQLite's, and the journal stays usable for
    what is not damaged."""
    path = tmp_path / "j.sqlite3"
    await filled(path)
    async with Journal(path) as journal:
        damage(path, name)
        with pytest.raises(JournalCorrupt) as caught:
            await read(journal)  # type: ignore[operator]
        assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)
        assert_names_the_recovery(caught.value, path)
        assert await journal.writable()


@pytest.mark.parametrize(
    "name", ["checkpoints", "sinks", "deliveries_pending", "deliveries_dead", "events_backlog"]
)
async def test_open_refuses_a_journal_whose_first_reads_hit_a_damaged_page(
    tmp_path: Path, name: str
) -> None:
    path = tmp_path / "j.sqlite3"
    await filled(path)
    damage(path, name)
    with pytest.raises(JournalCorrupt) as caught:
        await Journal(path).open()
    assert_names_the_recovery(caught.value, path)


def test_run_on_a_damaged_journal_stops_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "j.sqlite3"
    asyncio.run(filled(path))
    damage(path, "sinks")
    config = tmp_path / "relay.toml"
    config.write_text(f'[journal]\npath = "{path}"\n[http]\nenabled = false\n', encoding="utf-8")
    assert main(["run", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"exmail-relay run: error: journal {path} is damaged")
    assert "exmail-relay journal salvage" in err
    assert "Traceback" not in err


# -- a page that goes bad while the relay runs ------------------------------------------------


@pytest.mark.parametrize("name", ["sinks", "deliveries_pending"])
async def test_housekeeping_survives_a_damaged_page_and_readiness_names_the_journal(
    tmp_path: Path, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Seen: a damaged sinks table or pending index ended the process with
    ``RuntimeError: task housekeeping crashed``. Now the service keeps running, /readyz
    says ``journal: ...`` and the error is logged once, not every round."""
    path = tmp_path / "j.sqlite3"
    await filled(path)
    async with Journal(path) as journal:
        damage(path, name)
        service = RelayService(journal=journal, listeners=[], drainers=[], stats_interval=0.01)
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(stop))
        try:

            async def journal_failing() -> str | None:
                return (await service.health()).failing.get("journal")

            reason = await eventually(journal_failing, what="readiness naming the journal")
            assert "is damaged" in reason
            assert_names_the_recovery(Exception(reason), path)
            # Each round's recount is one commit: let a few rounds fail.
            rounds = journal.commits
            await eventually(lambda: journal.commits >= rounds + 5, what="more rounds")
            assert service.task_alive("housekeeping")
            assert not task.done()
        finally:
            stop.set()
            await task  # no "task housekeeping crashed"
    logged = [r for r in caplog.records if r.getMessage() == "journal stats failed"]
    assert len(logged) == 1, "logged once a minute while it lasts, not every round"


async def test_a_damaged_checkpoints_table_fails_the_tenant_without_a_crash_loop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Seen: a damaged checkpoints page gave a listener crash loop (a traceback per
    restart). Now the tenant is failed with the reason and retries with backoff."""
    path = tmp_path / "j.sqlite3"
    async with Journal(path) as journal:  # the tenant's Ver, on the page that goes bad
        await journal.append("acme", [], route=to(), checkpoint=1)
    async with Emulator(port=0, hold=0.5) as emu:
        settings = Settings(
            journal=JournalSettings(path=path),
            http=HttpSettings(enabled=False),
            tenants=[
                TenantSettings(
                    name="acme",
                    client_id="admin@example.com",
                    client_secret="exmail-demo-key",  # type: ignore[arg-type]
                    api_url=emu.api_url,
                    token_url=emu.token_url,
                    login_url=emu.login_url,
                    hold=0.5,
                )
            ],
        )
        async with build_service(settings) as running:
            damage(path, "checkpoints")
            service = running.service
            (listener,) = service.listeners
            stop = asyncio.Event()
            task = asyncio.create_task(service.run(stop))
            try:
                await eventually(lambda: listener.status.failures >= 2, what="the tenant retrying")
                assert listener.status.state == "failed"
                assert (listener.status.last_error or "").startswith("journal: journal ")
                health = await service.health()
                assert "is damaged" in health.failing["tenant:acme"]
                assert service.crashes == {}, "the listener never crashed"
            finally:
                stop.set()
                await task
    assert not [r for r in caplog.records if r.exc_info], "no traceback logged"
    retries = [r for r in caplog.records if r.getMessage() == "checkpoint unreadable, retrying"]
    assert len(retries) == 1, "logged once a minute while it lasts"
    assert all(r.levelno == logging.ERROR for r in retries)


class _Sink:
    name = "s"
    connected = True

    async def send(self, delivery: Delivery) -> Outcome:
        return Delivered()


async def test_a_drainer_whose_claims_hit_a_damaged_page_pauses_without_a_crash_loop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A claim reading a damaged pending index: the drainer shows the journal's error,
    pauses with backoff and claims again; it never raises out of run() (which made the
    supervisor restart it with a traceback each time)."""
    path = tmp_path / "j.sqlite3"
    await filled(path)
    async with Journal(path) as journal:
        damage(path, "deliveries_pending")
        policy = DrainPolicy(max_in_flight=4, backoff=Backoff(base=0.01, cap=0.05))
        drainer = Drainer(journal, _Sink(), policy, rand=lambda: 1.0)
        service = RelayService(journal=journal, listeners=[], drainers=[drainer])
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(stop))
        try:
            await eventually(lambda: drainer.refusals.failures >= 3, what="claims refused")
            assert drainer.failing
            assert "is damaged" in (drainer.last_error or "")
            health = await service.health()
            assert "is damaged" in health.failing["sink:s"]
            assert health.failing["journal"].startswith("not readable: "), health.failing
            assert service.crashes == {}, "the drainer never crashed"
            assert service.task_alive("drain:s")
        finally:
            stop.set()
            await task
    assert not [r for r in caplog.records if r.exc_info], "no traceback logged"
    refused = [
        r for r in caplog.records if r.getMessage() == "journal read failed, pausing the sink"
    ]
    assert len(refused) == 1, "logged once a minute while it lasts"
