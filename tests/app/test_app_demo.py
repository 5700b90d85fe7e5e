"""The demo: never lease mode, even with a broker; one tenant of each API, both of
which get mail when the demo runs (the whole demo, in-process, as the CLI runs it)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from relay.app.demo import DEMO_API2_TENANT, DEMO_CALLBACK_TOKEN, demo_settings, run_demo
from relay.emulator import Emulator
from tests.support import eventually


async def test_the_demo_never_takes_shard_leases(tmp_path: Path) -> None:
    # A demo pointed at a shared broker must not compete for the shard leases of a real
    # deployment that uses the default prefix: lease mode is the default with [amqp].
    async with Emulator(port=0) as emulator:
        with_broker = demo_settings(
            emulator,
            journal=tmp_path / "j.sqlite3",
            port=0,
            amqp_url="amqp://guest:guest@127.0.0.1:5672/",
            hold=1.0,
        )
    assert with_broker.amqp.enabled
    assert with_broker.sharding_mode == "static"


async def test_the_demo_serves_one_tenant_of_each_api(tmp_path: Path) -> None:
    async with Emulator(port=0) as emulator:
        settings = demo_settings(
            emulator, journal=tmp_path / "j.sqlite3", port=0, amqp_url=None, hold=1.0
        )
        api2_url = emulator.api2_url
    by_api = {t.api: t for t in settings.tenants}
    assert set(by_api) == {"openapi", "api2"} and len(settings.tenants) == 2
    api2 = by_api["api2"]
    assert api2.name == DEMO_API2_TENANT and api2.corpid == "wwdemo0000000001"
    assert api2.api_url == api2_url
    assert api2.callback_token is not None
    assert api2.callback_token.get_secret_value() == DEMO_CALLBACK_TOKEN
    assert DEMO_CALLBACK_TOKEN not in repr(settings)


async def test_the_demo_delivers_mail_to_both_tenants_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stop = asyncio.Event()
    lines: list[str] = []
    task = asyncio.create_task(
        run_demo(
            port=0, amqp_url=None, interval=0.05, stop=stop, journal_dir=tmp_path,
            announce=lines.append,
        )
    )  # fmt: skip
    seen: dict[str, set[str]] = {}

    def both_tenants_got_mail() -> bool:
        for line in capsys.readouterr().out.splitlines():
            if line.startswith("{"):
                event = json.loads(line)
                seen.setdefault(event["source"], set()).add(event["type"])
        return all(
            "exmail.mail.new" in seen.get(f"exmail-relay/{name}", set())
            for name in ("demo", DEMO_API2_TENANT)
        )

    try:
        await eventually(both_tenants_got_mail, seconds=30, what="mail events for both tenants")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert lines[0].startswith("exmail-relay demo: emulator http://127.0.0.1:")
    assert lines[1].startswith("tenants: demo (BizMail OpenApi")
    assert "/callback/demo-api2" in lines[1]
