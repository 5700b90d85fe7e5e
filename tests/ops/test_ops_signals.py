"""SIGHUP stops ``exmail-relay run`` in order, like SIGTERM (it used to kill it at once)."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

from relay.emulator import Emulator
from tests.ops.test_ops_shutdown import drain_stderr, start_relay, write_config


async def test_sighup_drains_and_exits_zero(tmp_path: Path) -> None:
    async with Emulator(port=0, hold=0.5) as emulator:
        config = write_config(tmp_path, emulator, "[console]\nenabled = true\n")
        proc, _ = await start_relay(config)
        stderr = asyncio.ensure_future(drain_stderr(proc))
        proc.send_signal(signal.SIGHUP)
        code = await asyncio.wait_for(proc.wait(), 15)
        records = [json.loads(line) for line in await stderr]
    messages = [r["message"] for r in records]
    assert code == 0, messages[-10:]
    stopping = [r for r in records if r["message"] == "signal received, stopping"]
    assert [r["signal"] for r in stopping] == ["SIGHUP"]
    assert messages.index("shutting down") < messages.index("relay stopped")
