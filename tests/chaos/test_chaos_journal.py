"""Chaos, with processes: the relay's journal on a small filesystem that really fills up.

1. A full journal under traffic: no fetched mail is lost, readiness goes false with
   SQLite's reason, and once room is made every mail is delivered.
2. A journal that refuses its outcome writes while deliveries are under way: repeats
   stay within the in-flight window, and the log says so at most once a second.

Each test runs ``exmail-relay run`` as a child process against the real emulator (on
loopback, in this process), and an independent receiver that counts every copy: a
RabbitMQ consumer (test 1) or a webhook endpoint checking signatures with
``standardwebhooks`` (test 2).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from relay.emulator import Emulator
from tests.chaos.support import (
    HookReceiver,
    amqp_section,
    copies,
    free_port,
    make_secret,
    relay_process,
    small_disk,
    unique_broker,
    webhook_section,
    write_config,
)
from tests.pipeline.support import Consumer, accounts, control
from tests.support import AMQP_URL, eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow, pytest.mark.timeout(240)]

FULL = "database or disk is full"


async def test_a_full_journal_under_traffic_loses_no_fetched_mail(tmp_path: Path) -> None:
    broker = unique_broker()
    port = free_port()
    with small_disk(tmp_path / "disk") as disk:
        async with Emulator(port=0, hold=1.0) as emu, Consumer(broker) as consumer:
            users = await accounts(emu)
            config = write_config(
                tmp_path / "relay.toml",
                emu,
                amqp_section(broker, AMQP_URL),
                journal=disk.path / "journal.sqlite3",
                port=port,
            )
            sent: list[str] = []

            async def send(count: int, label: str) -> None:
                mails = [
                    {"to": users[i % len(users)], "subject": f"{label} {i}"} for i in range(count)
                ]
                sent.extend((await control(emu, "mail", {"mails": mails}))["mail_ids"])

            async with relay_process(config, tmp_path / "relay.log", port) as relay:

                async def ready() -> bool:
                    status, _ = await relay.get("readyz")
                    return status == 200

                await eventually(ready, seconds=60, what="the relay ready")
                await send(50, "before")
                await eventually(
                    lambda: set(copies(consumer)) >= set(sent), seconds=30, what="the first 50"
                )

                filled = disk.fill()
                assert filled > 0
                # Traffic goes on while the disk is full: a steady trickle.
                for round_ in range(10):
                    await send(10, f"full {round_}")
                    await asyncio.sleep(0.2)

                async def not_ready_full() -> dict[str, str] | None:
                    status, body = await relay.get("readyz")
                    if status == 503 and FULL in body["failing"].get("journal", ""):
                        return dict(body["failing"])
                    return None

                failing = await eventually(not_ready_full, seconds=30, what="readiness: full")
                assert failing["journal"] == f"not writable: {FULL}"
                assert relay.alive
                _, status = await relay.get("status.json")
                tenant = status["tenants"][0]
                assert tenant["state"] == "paused", tenant
                # The relay holds what it fetched and asks for nothing more: the server
                # keeps the rest.
                state = await control(emu, "state", method="GET")
                assert state["companies"][0]["pending"] > 0

                disk.make_room()
                await send(30, "after")
                await eventually(
                    lambda: set(copies(consumer)) >= set(sent),
                    seconds=60,
                    what="every mail, once room is made",
                )
                await eventually(ready, seconds=30, what="ready again")
                assert relay.alive
            restarts = [
                line for line in relay.log_lines() if line.get("message") == "relay started"
            ]
            assert len(restarts) == 1, "the relay was started once and never restarted"
            crashes = [line for line in relay.log_lines() if "crashed" in line.get("message", "")]
            assert crashes == []
    assert len(sent) == 50 + 100 + 30
    print(f"full journal: {len(sent)} mails sent, {len(set(copies(consumer)))} delivered")


async def test_refused_outcome_writes_repeat_nothing_and_log_at_most_once_a_second(
    tmp_path: Path,
) -> None:
    """The issue saw 601 copies of 100 mails in 15 s. Deliveries are under way (a
    webhook at 10 per second) when the disk fills: the outcomes of those in flight
    cannot be recorded. The drainer holds them and claims nothing more; once room is
    made they are recorded and the rest goes out. Repeats: at most the in-flight
    window (4); here none, since the process lives throughout."""
    port = free_port()
    secret = make_secret()
    in_flight = 4  # the [[webhooks]] default max_in_flight
    with small_disk(tmp_path / "disk") as disk:
        async with Emulator(port=0, hold=1.0) as emu, HookReceiver(secret) as hook:
            users = await accounts(emu)
            config = write_config(
                tmp_path / "relay.toml",
                emu,
                webhook_section(hook.url, secret, rate_limit=10),
                journal=disk.path / "journal.sqlite3",
                port=port,
            )
            async with relay_process(config, tmp_path / "relay.log", port) as relay:
                await eventually(lambda: _open_listens(emu), seconds=60, what="listening")
                mails = [{"to": users[i % len(users)], "subject": f"m{i}"} for i in range(100)]
                sent = (await control(emu, "mail", {"mails": mails}))["mail_ids"]
                await eventually(lambda: len(hook.mails) >= 10, seconds=30, what="10 delivered")
                disk.fill()
                lines_before = len(relay.log_lines())
                window_start = time.monotonic()
                await asyncio.sleep(15)  # the window
                window = time.monotonic() - window_start
                during = hook.mails.copy()
                lines = relay.log_lines()[lines_before:]
                _, health = await relay.get("readyz")
                assert health["failing"]["journal"] == f"not writable: {FULL}", health
                assert "sink:webhook:erp" in health["failing"], health
                assert len(during) < 100, "deliveries stopped while outcomes were refused"
                disk.make_room()
                await eventually(
                    lambda: set(hook.mails) >= set(sent), seconds=60, what="every mail"
                )

                async def owed_none() -> bool:
                    _, status = await relay.get("status.json")
                    return bool(status) and status["journal"]["backlog_events"] == 0

                await eventually(owed_none, seconds=30, what="nothing owed")
    repeats_during = sum(during.values()) - len(during)
    repeats = sum(hook.mails.values()) - len(hook.mails)
    assert repeats_during <= in_flight and repeats <= in_flight, hook.mails
    assert hook.bad_signatures == 0
    assert len(lines) <= window, [line.get("message") for line in lines]
    print(
        f"outcomes refused for {window:.1f} s: {sum(during.values())} copies of "
        f"{len(during)} mails meanwhile; {repeats} repeats in all; {len(lines)} log lines"
    )


async def _open_listens(emu: Emulator) -> bool:
    state = await control(emu, "state", method="GET")
    return int(state["open_listens"]) > 0
