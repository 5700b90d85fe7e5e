"""Issue 12, item 4: a webhook endpoint removed from the configuration left 40 pending rows
that still counted toward ``max_events = 40``; the tenant stayed paused and 0 of 30 new
mails were delivered. Now the relay retires them to dead letters at start: the mails go
out, the status names the orphaned sink, and ``deadletters`` lists, refuses to replay
and drops its rows. Real emulator, real journal file, real loopback webhook receiver,
the real command line."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from pathlib import Path

import pytest

from relay.app.settings import ConsoleSettings, HttpSettings, JournalSettings, Settings
from relay.app.wiring import build_service
from relay.cli.deadletters import configured_sinks
from relay.cli.main import main as cli_main
from relay.core.delivery import Settlement
from relay.emulator import Emulator
from relay.journal import Journal
from relay.runtime.status import OrphanStatus
from tests.journal.test_journal_backlog import on_file
from tests.pipeline.support import accounts, control, settings_for
from tests.pipeline.test_pipeline_journal import mail, to
from tests.support import eventually, running_relay
from tests.webhook.conftest import Receiver, hook, make_secret, receiver

__all__ = ["receiver"]

GONE = "webhook:gone"


async def test_a_removed_endpoints_pending_rows_no_longer_block_the_tenant(
    emulator: Emulator,
    receiver: Receiver,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "journal.sqlite3"
    async with Journal(path) as journal:  # the relay ran with [[webhooks]] name = "gone"
        await journal.append("acme", [mail(n) for n in range(40)], route=to(GONE))
    settings = settings_for(
        emulator,
        tmp_path,
        journal={"path": path, "max_events": 40},
        webhooks=[hook(receiver, "kept", types=["exmail.mail.new"])],
    )
    alias = (await accounts(emulator))[0]
    with caplog.at_level(logging.WARNING, logger="relay.app.wiring"):
        async with running_relay(settings) as running:
            service = running.service
            assert not service.journal.full, "the orphans left the backlog before the start"
            await control(emulator, "mail", {"mails": [{"to": alias}] * 30})
            await receiver.wait_for("kept", 30, within=30)
            await service.refresh_stats()
            status = await service.status()
            assert status.orphans == (
                OrphanStatus(
                    name=GONE, dead=40, pending=0, retired=40, retired_at=service.retired_at
                ),
            )
            assert status.to_json()["orphans"][0]["dead"] == 40
            assert [s.name for s in status.sinks] == ["webhook:kept"]

            base = ["--journal", str(path)]
            argv = ["deadletters", "list", "--json", "--sink", GONE, *base]
            assert await asyncio.to_thread(cli_main, argv) == 0
            listed = json.loads(capsys.readouterr().out)
            assert len(listed) == 40
            errors = {d["last_error"] for d in listed}
            assert errors == {'sink "webhook:gone" is no longer configured'}
            assert {d["endpoint"] for d in listed} == {"gone"}

            argv = ["deadletters", "drop", "--endpoint", "gone", *base]
            assert await asyncio.to_thread(cli_main, argv) == 0
            assert "40 dead letter(s) of webhook:gone dropped, 40 event(s) deleted" in (
                capsys.readouterr().err
            )

            async def orphans_gone() -> bool:
                await service.refresh_stats()
                return (await service.status()).orphans == ()

            await eventually(orphans_gone, what="the dropped orphans off the status")
            await service.journal.recount()  # the CLI's commit, counted
            assert service.journal.backlog_events == on_file(path)[0]
    warnings = [r for r in caplog.records if r.name == "relay.app.wiring"]
    assert [(r.getMessage(), r.__dict__["sink"], r.__dict__["count"]) for r in warnings] == [
        ("pending deliveries of unconfigured sink retired to dead letters", GONE, 40)
    ]


async def test_replay_refuses_a_sink_the_configuration_does_not_have(
    tmp_path: Path, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "journal.sqlite3"
    async with Journal(path) as journal:
        await journal.append("acme", [mail(n) for n in range(3)], route=to(GONE))
        await journal.append("acme", [mail(n) for n in range(3, 5)], route=to("webhook:kept"))
        await journal.retire_orphans({"webhook:kept"})
        rows = await journal.claim("webhook:kept", limit=10)  # two real dead letters:
        await journal.settle("webhook:kept", [Settlement(r.seq, "dead") for r in rows])
    config = tmp_path / "relay.toml"
    config.write_text(
        f'[journal]\npath = "{path}"\n'
        f'[[webhooks]]\nname = "kept"\nurl = "{receiver.url("kept")}"\n'
        f'secret = "{make_secret()}"\n'
    )
    argv = ["deadletters", "replay", "--config", str(config)]
    assert await asyncio.to_thread(cli_main, [*argv, "--sink", GONE]) == 1
    assert "is not configured" in capsys.readouterr().err
    async with Journal(path) as journal:
        assert len(await journal.dead_letters(GONE)) == 3, "nothing replayed"

    # Every sink: the configured one's dead letters only; the orphan's are named, kept.
    assert await asyncio.to_thread(cli_main, argv) == 0
    told = capsys.readouterr().err
    assert "2 dead letter(s) queued" in told and f"--sink {GONE} --force" in told
    async with Journal(path) as journal:
        assert len(await journal.dead_letters(GONE)) == 3
        assert await journal.dead_letters("webhook:kept") == []
        assert journal.backlog_events == 2

    assert await asyncio.to_thread(cli_main, [*argv, "--sink", GONE, "--force"]) == 0
    assert "3 dead letter(s) queued" in capsys.readouterr().err
    async with Journal(path) as journal:
        assert await journal.dead_letters(GONE) == []
        assert journal.backlog_events == 5


async def test_the_commands_idea_of_configured_sinks_is_the_relays(
    tmp_path: Path, receiver: Receiver
) -> None:
    """``deadletters replay`` judges "configured" from the settings; the relay retires
    whatever has no drainer. The two must agree, or replay would refuse a live sink (or
    recreate orphans): a webhook with ``enabled = false`` is not run, so not configured."""
    settings = Settings(
        journal=JournalSettings(path=tmp_path / "journal.sqlite3"),
        http=HttpSettings(enabled=False),
        console=ConsoleSettings(enabled=True),
        webhooks=[hook(receiver, "on"), hook(receiver, "off", enabled=False)],
    )
    async with build_service(settings, console_stream=io.StringIO()) as running:
        drained = {drainer.name for drainer in running.service.drainers}
    assert drained == configured_sinks(settings) == {"console", "webhook:on"}
