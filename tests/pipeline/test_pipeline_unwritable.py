"""A journal that refuses writes, in-process: the listener keeps the batch it fetched,
the drainer keeps the outcomes it could not record, readiness says why, and nothing is
lost or sent twice while the process lives.

The refusal is real: a second SQLite connection holds the journal's write lock
(``BEGIN EXCLUSIVE``), exactly what another process doing a long write does; the
relay's writer gives up after its busy timeout with ``database is locked``. The full
disk, with processes, is in ``tests/chaos/``.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay.app.wiring import Running
from relay.emulator import Emulator
from tests.pipeline.support import Broker, Consumer, accounts, control, settings_for
from tests.support import AMQP_URL, BROKER_ADDRESS, TcpProxy, eventually, running_relay

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]


@contextlib.contextmanager
def write_lock(path: Path) -> Iterator[None]:
    """Hold ``path``'s write lock (readers go on: the journal is in WAL mode)."""
    db = sqlite3.connect(path, timeout=10, isolation_level=None)
    try:
        db.execute("BEGIN EXCLUSIVE")
        yield
        db.execute("ROLLBACK")
    finally:
        db.close()


async def journal_failing(running: Running) -> str | None:
    health = await running.service.health()
    return health.failing.get("journal")


def mails_seen(consumer: Consumer) -> Counter[str]:
    return Counter(
        json.loads(m.body)["data"]["mail_id"]
        for m in consumer.messages
        if m.type == "exmail.mail.new"
    )


async def test_a_refused_commit_keeps_the_fetched_batch_and_readiness_says_why(
    emulator: Emulator, broker: Broker, tmp_path: Path
) -> None:
    users = await accounts(emulator)
    s = settings_for(emulator, tmp_path, broker)
    async with Consumer(broker) as consumer, running_relay(s) as running:
        await consumer.wait_for(1)  # the bootstrap's directory.changed
        assert await journal_failing(running) is None
        listener = running.service.listeners[0]
        with write_lock(s.journal.path):
            mails = [{"to": users[i % len(users)], "subject": f"held {i}"} for i in range(30)]
            sent = set((await control(emulator, "mail", {"mails": mails}))["mail_ids"])
            # First the probe's own wait runs out; once the listener's commit has been
            # refused, readiness carries SQLite's words.
            assert (await journal_failing(running) or "").startswith("not writable: ")

            async def locked() -> str | None:
                reason = await journal_failing(running)
                return reason if reason and "locked" in reason else None

            reason = await eventually(locked, seconds=30, what="readiness to name the lock")
            assert reason == "not writable: database is locked"
            assert listener.status.state == "paused"
            assert listener.status.journal_error == reason
            # The server handed (some of) the mails out: those exist only in the
            # listener's hands now, and no further listen takes the rest meanwhile.
            state = await control(emulator, "state", method="GET")
            assert state["companies"][0]["pending"] < 30, state["companies"][0]
            await eventually(
                lambda: listener.status.journal_error is not None and running.service.crashes == {},
                what="the listener to keep retrying without crashing",
            )
        await eventually(lambda: set(mails_seen(consumer)) >= sent, seconds=30, what="every mail")
        await eventually(
            lambda: _ready_journal(running), seconds=10, what="readiness back after the lock"
        )
        assert listener.status.journal_error is None
        assert running.service.crashes == {}


async def _ready_journal(running: Running) -> bool:
    return "journal" in (await running.service.health()).ok


async def test_refused_outcomes_are_held_and_recorded_later_never_sent_again(
    emulator: Emulator, broker: Broker, tmp_path: Path
) -> None:
    users = await accounts(emulator)
    proxy = TcpProxy(*BROKER_ADDRESS)
    await proxy.start()
    url = AMQP_URL.replace(f":{BROKER_ADDRESS[1]}/", f":{proxy.port}/")
    s = settings_for(emulator, tmp_path, amqp=broker.amqp_settings(url))
    try:
        async with Consumer(broker) as consumer, running_relay(s) as running:
            await consumer.wait_for(1)
            drainer = running.service.drainers[0]
            await proxy.stop()  # the broker goes away: the mails stay pending
            mails = [{"to": users[i % len(users)], "subject": f"owed {i}"} for i in range(40)]
            sent = set((await control(emulator, "mail", {"mails": mails}))["mail_ids"])
            await eventually(
                lambda: running.service.journal.backlog_events >= 40, seconds=30, what="40 pending"
            )
            with write_lock(s.journal.path):
                await proxy.start()  # the broker is back, but no outcome can be recorded
                await eventually(
                    lambda: len(drainer.refusals.held) > 0 and drainer.failing,
                    seconds=40,
                    what="the drainer to hold outcomes the journal refused",
                )
                reason = await journal_failing(running)
                assert reason is not None and "database is locked" in reason
                held_at_first = len(drainer.refusals.held)
                # Nothing more is claimed while outcomes are held: the backlog behind
                # them waits, and no delivery goes out twice.
                await eventually(
                    lambda: drainer.refusals.failures >= 2,
                    seconds=20,
                    what="a second refusal (the retry of the held outcomes)",
                )
                assert len(drainer.refusals.held) == held_at_first
                assert max(mails_seen(consumer).values(), default=1) == 1
            await eventually(lambda: set(mails_seen(consumer)) >= sent, seconds=40, what="all")
            journal = running.service.journal
            await eventually(lambda: journal.backlog_events == 0, what="nothing owed")
            assert len(drainer.refusals.held) == 0 and not drainer.failing
            copies = mails_seen(consumer)
            assert sum(copies.values()) == len(sent), "no mail was sent twice"
    finally:
        await proxy.stop()
