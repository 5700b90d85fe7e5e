"""The demo's settings: never lease mode, even with a broker."""

from __future__ import annotations

from pathlib import Path

from relay.app.demo import demo_settings
from relay.emulator import Emulator


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
