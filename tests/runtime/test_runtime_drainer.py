"""The drainer over a real journal file: what happens when the journal refuses a write,
when the drainer itself has a bug, on stop(), and under a rate limit.

The journal's failures are real: a second SQLite connection installs a trigger that
makes SQLite abort the write (the table names are the journal's file format), exactly
as a full disk or a corrupt page would surface, as a ``JournalError`` from the journal.
The sink is the documented seam: a plain in-memory object with name/connected/send.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
import sqlite3
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from relay.core.backoff import Backoff
from relay.core.delivery import Delivered, Delivery, Disable, DrainPolicy, Outcome, Unavailable
from relay.journal import Journal
from relay.runtime.drainer import Drainer
from relay.runtime.observer import SinkObserver
from relay.runtime.supervisor import RelayService
from tests.pipeline.test_pipeline_journal import mail, to
from tests.support import eventually

REFUSE_OUTCOMES = (
    "CREATE TRIGGER refuse BEFORE UPDATE ON deliveries"
    " BEGIN SELECT RAISE(ABORT, 'injected outcome failure'); END"
)
# set_disabled inserts the sink's row, or updates it when it exists.
REFUSE_DISABLE = [
    f"CREATE TRIGGER refuse_{op} BEFORE {op} ON sinks"
    " BEGIN SELECT RAISE(ABORT, 'injected disable failure'); END"
    for op in ("INSERT", "UPDATE")
]
# Backoff steps of 0.05, 0.1, 0.2, 0.2, ... seconds (rand is pinned to 1.0).
BACKOFF = Backoff(base=0.05, cap=0.2)


class MemorySink:
    """Answers every send with ``answer`` and records when each one started."""

    def __init__(self, answer: Callable[[Delivery], Outcome] = lambda _d: Delivered()) -> None:
        self.name = "mem"
        self.connected = True
        self.answer = answer
        self.sent: list[tuple[float, Delivery]] = []

    async def send(self, delivery: Delivery) -> Outcome:
        self.sent.append((asyncio.get_running_loop().time(), delivery))
        return self.answer(delivery)


class CountingObserver(SinkObserver):
    def __init__(self) -> None:
        self.failures: Counter[str] = Counter()

    def failed(self, reason: str) -> None:
        self.failures[reason] += 1


def sql(path: Path, *statements: str) -> None:
    """Run ``statements`` on a second connection to the journal's file."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None, timeout=10)) as db:
        for statement in statements:
            db.execute(statement)


def deliveries(path: Path) -> dict[str, tuple[int, bytes]]:
    """Every delivery row of the journal file: event id -> (state, body)."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        rows = db.execute(
            "SELECT e.id, d.state, e.body FROM deliveries d JOIN events e ON e.seq = d.seq"
        ).fetchall()
    return {event_id: (state, bytes(body)) for event_id, state, body in rows}


def most_probes(elapsed: float, backoff: Backoff) -> int:
    """How many pause-then-probe steps fit in ``elapsed`` seconds at most (rand = 1)."""
    steps, spent = 0, 0.0
    while True:
        spent += max(0.05, backoff.delay(steps, 1.0))
        if spent > elapsed:
            return steps
        steps += 1


def assert_nothing_unhandled(seen: list[dict[str, Any]], caplog: pytest.LogCaptureFixture) -> None:
    gc.collect()  # a lost task exception is reported when the task is collected
    assert seen == []
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


def assert_paused(sink: MemorySink, first_window: int) -> None:
    """Past the first window, sends are probes: one per backoff step, never faster."""
    times = [t for t, _ in sink.sent]
    elapsed = times[-1] - times[0]
    assert len(times) <= first_window + most_probes(elapsed, BACKOFF) + 1, (len(times), elapsed)
    probes = times[first_window:]
    # Each probe waits out a whole step (>= 0.05 s) after the one before it failed.
    assert all(b - a >= 0.04 for a, b in itertools.pairwise(probes)), probes


async def test_a_refused_outcome_write_is_shown_counted_and_paused_not_lost(
    tmp_path: Path, unhandled: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    """The bug: a JournalError from recording an outcome vanished into a done-callback
    ("Task exception was never retrieved"), last_error stayed empty and the event was
    sent again and again. Now it is shown, counted, logged once and the sink pauses;
    the refused outcomes are held and retried alone (nothing is sent again while the
    process lives); once the journal takes writes every event ends delivered, once."""
    caplog.set_level(logging.INFO, logger="relay.runtime.drainer")
    path = tmp_path / "j.sqlite3"
    sink, observer = MemorySink(), CountingObserver()
    events = [mail(n) for n in range(3)]
    policy = DrainPolicy(max_in_flight=8, backoff=BACKOFF)
    async with Journal(path) as journal:
        sql(path, REFUSE_OUTCOMES)
        await journal.append("acme", events, route=to("mem"))
        drainer = Drainer(journal, sink, policy, rand=lambda: 1.0, observer=observer)
        task = asyncio.create_task(drainer.run())

        await eventually(
            lambda: "injected outcome failure" in (drainer.last_error or ""),
            seconds=10,
            what="last_error naming the outcome failure",
        )
        assert drainer.failing
        service = RelayService(journal=journal, listeners=[], drainers=[drainer])
        health = await service.health()
        assert "injected outcome failure" in health.failing["sink:mem"]

        # Watch three pause-then-retry steps go by: the held outcomes are written
        # again, the events are not sent again.
        await eventually(
            lambda: drainer.refusals.failures >= 4, seconds=10, what="three retries refused"
        )
        assert drainer.failing and not task.done()
        assert observer.failures["journal"] == len(events)  # one per attempt, not per retry
        assert len(drainer.refusals.held) == len(events)
        assert len(sink.sent) == len(events)

        sql(path, "DROP TRIGGER refuse")
        await eventually(
            lambda: journal.backlog_events == 0 and not drainer.failing,
            seconds=10,
            what="the held outcomes recorded",
        )
        assert drainer.last_error is None
        assert "sink:mem" in (await service.health()).ok
        await drainer.stop(1.0)
        await task

    rows = deliveries(path)
    assert {state for state, _ in rows.values()} == {1}  # delivered
    # Once each, the recorded body.
    assert sorted(d.event_id for _, d in sink.sent) == sorted(rows)
    assert {d.event_id: d.body for _, d in sink.sent} == {i: body for i, (_, body) in rows.items()}
    assert set(rows) == {e.id for e in events}
    failed = [
        r for r in caplog.records if r.getMessage() == "journal write failed, pausing the sink"
    ]
    assert len(failed) == 1  # rate-limited: the first failure, not one per attempt
    assert failed[0].__dict__["sink"] == "mem"
    assert "injected outcome failure" in failed[0].__dict__["error"]
    assert [r.getMessage() for r in caplog.records].count("journal writes recovered") == 1
    assert drainer.failed == observer.failures.total()
    assert_nothing_unhandled(unhandled, caplog)


async def test_a_refused_disable_is_shown_and_paused_then_recorded(
    tmp_path: Path, unhandled: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    """A 410 whose disable the journal refuses: not disabled (not recorded), shown,
    counted, paused; once the journal takes writes the endpoint ends disabled."""
    path = tmp_path / "j.sqlite3"
    sink, observer = MemorySink(lambda _d: Disable("HTTP 410 Gone")), CountingObserver()
    events = [mail(n) for n in range(2)]
    async with Journal(path) as journal:
        sql(path, *REFUSE_DISABLE)
        await journal.append("acme", events, route=to("mem"))
        drainer = Drainer(
            journal,
            sink,
            DrainPolicy(max_in_flight=8, backoff=BACKOFF),
            rand=lambda: 1.0,
            observer=observer,
        )
        task = asyncio.create_task(drainer.run())

        await eventually(
            lambda: "injected disable failure" in (drainer.last_error or ""),
            seconds=10,
            what="last_error naming the disable failure",
        )
        assert drainer.failing
        assert await journal.disabled("mem") is None
        await eventually(
            lambda: observer.failures["journal"] >= len(events) + 2,
            seconds=10,
            what="journal failures counted",
        )
        assert not task.done()
        assert_paused(sink, len(events))

        sql(path, "DROP TRIGGER refuse_INSERT", "DROP TRIGGER refuse_UPDATE")
        await eventually(
            lambda: drainer.disabled_reason == "HTTP 410 Gone",
            seconds=10,
            what="the endpoint disabled",
        )
        await eventually(
            lambda: not drainer.failing, seconds=10, what="the drainer no longer failing"
        )
        assert await journal.disabled("mem") == "HTTP 410 Gone"
        assert drainer.last_error == "HTTP 410 Gone"
        await drainer.stop(1.0)
        await task
    assert_nothing_unhandled(unhandled, caplog)


class BrokenObserver(SinkObserver):
    """A bug inside the attempt machinery (not the sink: that becomes Unavailable)."""

    def __init__(self, times: int) -> None:
        self.times = times

    def delivered(self, latency: float) -> None:
        if self.times > 0:
            self.times -= 1
            raise RuntimeError("observer bug")


async def test_a_bug_in_an_attempt_propagates_out_of_run(
    tmp_path: Path, unhandled: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    """Before, the attempt task died alone and run() went on as if nothing happened."""
    async with Journal(tmp_path / "j.sqlite3") as journal:
        await journal.append("acme", [mail(n) for n in range(3)], route=to("mem"))
        drainer = Drainer(journal, MemorySink(), DrainPolicy(), observer=BrokenObserver(99))
        with pytest.raises(RuntimeError, match="observer bug"):
            await drainer.run()
        assert drainer.in_flight == 0  # nothing it started outlives run()
        # The outcomes were never recorded: every row is still pending, not lost.
        assert len(await journal.claim("mem", limit=10)) == 3
    assert_nothing_unhandled(unhandled, caplog)


async def test_the_supervisor_logs_a_drainer_bug_and_restarts_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sink = MemorySink()
    async with Journal(tmp_path / "j.sqlite3") as journal:
        await journal.append("acme", [mail(n) for n in range(3)], route=to("mem"))
        drainer = Drainer(journal, sink, DrainPolicy(), observer=BrokenObserver(1))
        service = RelayService(
            journal=journal,
            listeners=[],
            drainers=[drainer],
            restart_backoff=Backoff(base=0.01, cap=0.01),
        )
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(stop))
        await eventually(
            lambda: journal.backlog_events == 0, seconds=10, what="the backlog drained"
        )
        stop.set()
        await task
    assert service.crashes == {"drain:mem": 1}
    crashed = [r for r in caplog.records if r.getMessage() == "worker crashed, restarting"]
    assert len(crashed) == 1
    # The traceback, as it is or as the redaction filter (relay.ops.logs) leaves it.
    record = crashed[0]
    formatted = logging.Formatter().formatException(record.exc_info) if record.exc_info else ""
    traceback = record.exc_text or formatted
    assert "RuntimeError: observer bug" in traceback


async def test_stop_cancels_after_the_grace_and_raises_nothing(
    tmp_path: Path, unhandled: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    """A hung attempt gets the grace and is cancelled; a drainer paused on a refusing
    journal stops at once. Neither raises; the rows stay pending for the restart."""
    path = tmp_path / "j.sqlite3"
    hang = asyncio.Event()

    class HangingSink(MemorySink):
        async def send(self, delivery: Delivery) -> Outcome:
            await super().send(delivery)
            await hang.wait()
            return Delivered()

    async with Journal(path) as journal:
        await journal.append("acme", [mail(0)], route=to("hung"))
        hung = HangingSink()
        hung.name = "hung"
        drainer = Drainer(journal, hung, DrainPolicy())
        task = asyncio.create_task(drainer.run())
        await eventually(lambda: drainer.in_flight == 1, seconds=10, what="one attempt in flight")
        await drainer.stop(0.05)
        await task
        assert drainer.in_flight == 0
        assert len(await journal.claim("hung", limit=10)) == 1

        sql(path, REFUSE_OUTCOMES)
        await journal.append("acme", [mail(1)], route=to("mem"))
        policy = DrainPolicy(backoff=Backoff(base=3600.0, cap=3600.0))
        drainer = Drainer(journal, MemorySink(), policy, rand=lambda: 1.0)
        task = asyncio.create_task(drainer.run())
        await eventually(lambda: drainer.failing, seconds=10, what="the drainer failing")
        await drainer.stop(1.0)  # cuts the hour-long pause short
        await task
        assert len(await journal.claim("mem", limit=10)) == 1
    assert_nothing_unhandled(unhandled, caplog)


async def test_a_rate_limit_spaces_the_starts_of_attempts(tmp_path: Path) -> None:
    """rate_limit = 10: the first 10 start at once, then 10 per second, never faster.
    Start times are the loop's clock, which the drainer's limiter also reads (the
    monotonic clock: a step of the wall clock must neither stall nor refill it)."""
    rate, count = 10, 25
    sink = MemorySink()
    async with Journal(tmp_path / "j.sqlite3") as journal:
        await journal.append("acme", [mail(n) for n in range(count)], route=to("mem"))
        loop = asyncio.get_running_loop()
        drainer = Drainer(journal, sink, DrainPolicy(rate_limit=rate), monotonic=loop.time)
        task = asyncio.create_task(drainer.run())
        await eventually(
            lambda: journal.backlog_events == 0, seconds=20, what="the backlog drained"
        )
        await drainer.stop(1.0)
        await task
    starts = [t for t, _ in sink.sent]
    assert len(starts) == count
    # In any interval [t_i, t_j]: at most the burst plus rate per second (one start of
    # slack for the loop's scheduling between the limiter and the send).
    for i in range(count):
        for j in range(i + rate, count):
            assert j - i + 1 <= rate + rate * (starts[j] - starts[i]) + 1, (i, j, starts)
    assert starts[-1] - starts[0] >= (count - rate) / rate * 0.9


async def test_a_batch_refused_at_start_up_pauses_one_step_not_twenty(tmp_path: Path) -> None:
    """The sink's link comes up just after the first claim: every attempt of that batch
    answers Unavailable at once, and so does the probe right after it. That is one
    failed probe, not twenty-one: the pause is the first backoff step. (Counted per
    attempt, the streak reached 21 and the drainer slept up to ``retry_max``: bench
    bursts saw nothing published for 12-30 s after start-up.)"""
    count = 20
    sink = MemorySink()
    refused = count + 1  # the batch, and the probe that follows it at once
    sink.answer = lambda _d: Delivered() if len(sink.sent) > refused else Unavailable("up soon")
    async with Journal(tmp_path / "j.sqlite3") as journal:
        await journal.append("acme", [mail(n) for n in range(count)], route=to("mem"))
        policy = DrainPolicy(backoff=Backoff(base=0.05, cap=30.0))
        drainer = Drainer(journal, sink, policy, rand=lambda: 1.0)
        task = asyncio.create_task(drainer.run())
        await eventually(lambda: journal.backlog_events == 0, seconds=5, what="the backlog")
        await drainer.stop(1.0)
        await task
    times = [t for t, _ in sink.sent]
    before, after = times[:refused], times[refused:]
    assert len(after) == count  # every event delivered once the link was up
    assert after[0] - before[-1] < 1.0, "one backoff step (0.05 s), not the cap"
