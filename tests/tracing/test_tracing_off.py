"""Tracing off costs nothing and imports nothing.

The relay runs as a real process (``exmail-relay run``) against the emulator, relays a
mail to its console sink and stops on SIGTERM; at exit it writes which ``opentelemetry``
modules it had loaded, and which imports a meta path finder refused. With no ``OTEL_``
variable that asks for traces, none is loaded (the ``[otel]`` extra is installed here:
``.[dev]`` has it) and none is even looked for; asked for traces without the extra (the
finder stands in for its absence), the relay runs untraced and says why.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from relay.app.tracing import wanted_exporters
from relay.emulator import Emulator
from tests.pipeline.support import accounts, control

# Runs in the relay's process: the optional import blocker, the exit report, the CLI.
WRAPPER = r"""
import atexit, importlib.abc, json, sys

report_path, block = sys.argv[1], sys.argv[2] == "block"
refused = []

class RefuseOpenTelemetry(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "opentelemetry":
            refused.append(name)
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

if block:
    sys.meta_path.insert(0, RefuseOpenTelemetry())

def report():
    loaded = sorted(m for m in sys.modules if m.partition(".")[0] == "opentelemetry")
    with open(report_path, "w") as out:
        json.dump({"loaded": loaded, "refused": refused}, out)

atexit.register(report)
from relay.cli import main
sys.exit(main(sys.argv[3:]))
"""


def config(path: Path, emu: Emulator) -> Path:
    path.write_text(
        f"""
[journal]
path = "{path.parent / "journal.sqlite3"}"
[[tenants]]
name = "acme"
client_id = "admin@example.com"
client_secret = "exmail-demo-key"
api_url = "{emu.api_url}"
token_url = "{emu.token_url}"
login_url = "{emu.login_url}"
hold = 0.5
[console]
enabled = true
[http]
enabled = false
[log]
level = "warning"
format = "json"
""",
        encoding="utf-8",
    )
    return path


async def relay_one_mail(
    tmp_path: Path, *, block: bool, otel: dict[str, str]
) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Run the relay until one mail comes out of its console sink: that event, the exit
    report and what the relay logged."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")} | otel
    report = tmp_path / "report.json"
    async with Emulator(port=0, hold=0.5) as emu:
        user = (await accounts(emu))[0]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WRAPPER,
            str(report),
            "block" if block else "-",
            "run",
            "--config",
            str(config(tmp_path / "relay.toml", emu)),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        assert proc.stdout is not None and proc.stderr is not None
        stderr = asyncio.ensure_future(proc.stderr.read())
        try:
            event: dict[str, Any] = {}
            sent = False
            while event.get("type") != "exmail.mail.new":
                if not sent and (await control(emu, "state", method="GET"))["open_listens"]:
                    await control(emu, "mail", {"to": user})
                    sent = True
                try:
                    line = await asyncio.wait_for(proc.stdout.readline(), 0.5)
                except TimeoutError:
                    continue
                assert line, f"the relay ended early: {(await stderr).decode()}"
                event = json.loads(line)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 30) == 0
    return event, json.loads(report.read_text()), (await stderr).decode()


@pytest.mark.timeout(90)
async def test_without_otel_variables_nothing_of_opentelemetry_is_imported(
    tmp_path: Path,
) -> None:
    event, report, _ = await relay_one_mail(tmp_path, block=False, otel={})
    assert "traceparent" not in event
    assert report == {"loaded": [], "refused": []}


@pytest.mark.timeout(90)
async def test_tracing_off_never_even_looks_for_opentelemetry(tmp_path: Path) -> None:
    """The blocker refuses any opentelemetry import and records the attempt: none."""
    otel = {"OTEL_SERVICE_NAME": "relay", "OTEL_TRACES_SAMPLER": "always_on"}  # not "on"
    event, report, _ = await relay_one_mail(tmp_path, block=True, otel=otel)
    assert event["type"] == "exmail.mail.new"
    assert report == {"loaded": [], "refused": []}


@pytest.mark.timeout(90)
async def test_asked_for_traces_without_the_extra_the_relay_runs_untraced(
    tmp_path: Path,
) -> None:
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    event, report, log = await relay_one_mail(tmp_path, block=True, otel=otel)
    assert "traceparent" not in event
    assert report["loaded"] == []
    assert report["refused"], "the relay looked for the extra"
    assert "the [otel] extra is not installed" in log


@pytest.mark.parametrize(
    ("environ", "exporters"),
    [
        ({}, ()),
        ({"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "always_on"}, ()),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ("otlp",)),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, ("otlp",)),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": " "}, ()),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, ("otlp",)),  # the standard's default endpoint
        ({"OTEL_TRACES_EXPORTER": "console, otlp,console"}, ("console", "otlp")),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, ()),
        ({"OTEL_SDK_DISABLED": "TRUE", "OTEL_TRACES_EXPORTER": "otlp"}, ()),
        ({"OTEL_SDK_DISABLED": "false", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, ("otlp",)),
    ],
)
def test_which_variables_turn_tracing_on(
    environ: dict[str, str], exporters: tuple[str, ...]
) -> None:
    assert wanted_exporters(environ) == exporters
