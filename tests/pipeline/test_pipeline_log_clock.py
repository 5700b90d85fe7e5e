"""The listener's outage log ("at most once a minute") is timed on the monotonic clock:
a wall clock stepped back an hour must not silence it for that hour. Real emulator."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from relay.core.backoff import Backoff
from relay.core.routing import Router
from relay.emulator import Emulator
from relay.journal import Journal
from relay.runtime.listener import LOG_EVERY, Listener
from tests.pipeline.support import control
from tests.pipeline.test_pipeline_backoff import client_of
from tests.support import eventually

FAULT = "upstream fault, backing off"


class Clocks:
    """The real wall clock plus an offset, and a monotonic clock the test moves."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.mono = 1000.0

    def wall(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return self.mono


async def test_a_step_back_does_not_silence_the_outage_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="relay.runtime.listener")

    def logged() -> int:
        return sum(r.getMessage() == FAULT for r in caplog.records)

    clocks = Clocks()
    async with (
        Emulator(port=0, hold=0.3) as emu,
        client_of(emu, read_retries=0) as client,
        Journal(tmp_path / "journal.sqlite3") as journal,
    ):
        await control(emu, "faults", {"kind": "http_500", "count": 100_000})
        listener = Listener(
            tenant="acme",
            client=client,
            journal=journal,
            route=Router(()),
            backoff=Backoff(base=0.02, cap=0.05),
            clock=clocks.wall,
            monotonic=clocks.monotonic,
        )
        task = asyncio.create_task(listener.run())
        try:
            await eventually(lambda: listener.status.failures >= 3, what="three failures")
            assert logged() == 1  # the first failure; the rest within the minute: quiet
            clocks.offset -= 3600.0  # the wall clock goes back an hour...
            clocks.mono += LOG_EVERY + 1  # ...while a minute passes
            await eventually(lambda: logged() == 2, what="the outage logged again")
        finally:
            listener.stop()
            await task
