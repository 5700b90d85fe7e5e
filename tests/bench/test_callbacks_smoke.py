"""``python -m bench --smoke --scenario callbacks`` completes: every signed and encrypted
callback the generator sent was answered 200 and reached the consumer once, with the
MailID sent and the event id the relay derives (issue 21). No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow, pytest.mark.timeout(90)]

ROOT = Path(__file__).resolve().parents[2]


def test_callbacks_smoke_run_delivers_every_answered_callback_once(tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    argv = [sys.executable, "-m", "bench", "--smoke", "--scenario", "callbacks"]
    proc = subprocess.run(
        [*argv, "--rate", "15", "--seconds", "2", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=80,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    (run,) = [line for line in lines if line["target"] == "relay"]
    assert run["status"] == "ok", run
    assert run["sizes"] == "smoke, rate=15, seconds=2"
    assert run["callbacks"] == run["sent"] == run["answered_200"] == 30
    assert run["failed"] == 0 and run["failures"] == {}
    assert run["delivered"] == 30
    assert run["missing"] == run["duplicates"] == run["wrong_ids"] == run["lost"] == 0
    assert 0 < run["answer_p50_ms"] <= run["answer_p99_ms"] <= run["answer_max_ms"]
    assert run["cpu_us_per_callback"] >= 0
    (summary,) = [line for line in lines if line["target"] == "summary"]
    assert summary["status"] == "ok" and summary["lost"] == 0
