"""``exmail-relay endpoint disable|enable`` from another process is followed by a
running relay's drainer within seconds (it used to be noticed only on a 410)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from relay.cli.endpoint import OPERATOR_REASON
from relay.core.delivery import DrainPolicy
from relay.journal import Journal
from relay.runtime.drainer import DISABLED_POLL, Drainer
from tests.pipeline.test_pipeline_journal import mail, to
from tests.runtime.test_runtime_drainer import MemorySink
from tests.support import eventually

ROOT = Path(__file__).resolve().parents[2]


async def endpoint(action: str, path: Path) -> None:
    """The real command, in a process of its own, on the same journal file."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relay", "endpoint", action, "hook", "--journal", str(path),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert f"endpoint hook {action}d" in out.decode()


async def test_a_disable_from_another_process_stops_delivery_and_an_enable_resumes_it(
    tmp_path: Path,
) -> None:
    assert DISABLED_POLL <= 1.0  # what keeps "within seconds" true
    path = tmp_path / "journal.sqlite3"
    sink = MemorySink()
    sink.name = "webhook:hook"
    async with Journal(path) as journal:
        drainer = Drainer(journal, sink, DrainPolicy())
        task = asyncio.create_task(drainer.run())
        try:
            await journal.append("acme", [mail(n) for n in range(5)], route=to(sink.name))
            await eventually(lambda: len(sink.sent) == 5, what="the first five delivered")

            await endpoint("disable", path)
            await eventually(
                lambda: drainer.disabled_reason == OPERATOR_REASON,
                seconds=10,
                what="the drainer to see the disable",
            )
            await journal.append("acme", [mail(n) for n in range(5, 15)], route=to(sink.name))

            async def ten_waiting() -> bool:
                stats = (await journal.stats()).sinks[sink.name]
                return stats.pending == 10 and stats.disabled

            await eventually(ten_waiting, what="ten deliveries waiting")
            assert len(sink.sent) == 5  # nothing sent while disabled

            await endpoint("enable", path)
            await eventually(lambda: len(sink.sent) == 15, seconds=10, what="all fifteen sent")
            assert drainer.disabled_reason is None
        finally:
            await drainer.stop(1.0)
            await task
