"""An api2 tenant's listing survives a kill -9 of its owner: relay processes in lease
mode, the real RabbitMQ, the emulator. Owner A commits its baseline and is killed; the
directory changes; B starts with an empty journal, takes the shard, reads A's listing
from the broker and reports exactly those changes, once (docs/leases.md, "Directory
polls of api2 tenants")."""

from __future__ import annotations

import contextlib
import json
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from relay.core.events import USER_ADDED, USER_DELETED, USER_UPDATED, user_change_id
from relay.emulator import Emulator
from tests.chaos.support import RelayProcess, free_port
from tests.pipeline.support import Broker, Consumer, control
from tests.support import AMQP_URL, DEPLOYMENT_SECRET, delete_lease_names, eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow, pytest.mark.timeout(180)]

TENANT = "killco"
CORPID = "wwdirkill00000001"
SECRET = "directory-kill-secret"
DOMAIN = "kill.test"


def config(root: Path, emu: Emulator, prefix: str, replica: str, port: int) -> Path:
    path = root / f"{replica}.toml"
    path.write_text(
        f"""
[journal]
path = "{root / f"{replica}.sqlite3"}"
synchronous = "normal"

[[tenants]]
name = "{TENANT}"
api = "api2"
corpid = "{CORPID}"
contact_secret = "{SECRET}"
callback_token = "tok12345"
encoding_aes_key = "{"k" * 43}"
api_url = "{emu.api2_url}"
directory_interval = 1

[amqp]
enabled = true
url = "{AMQP_URL}"
exchange = "{prefix}"
queue = "{prefix}"

[sharding]
replica_id = "{replica}"
prefix = "{prefix}"
heartbeat = 2
secret = "{DEPLOYMENT_SECRET}"

[shutdown]
timeout = 3

[http]
port = {port}

[log]
level = "info"
format = "json"
""",
        encoding="utf-8",
    )
    return path


@contextlib.asynccontextmanager
async def names() -> AsyncIterator[str]:
    prefix = f"test.hadir.{uuid.uuid4().hex[:10]}"
    try:
        yield prefix
    finally:
        await delete_lease_names(prefix, listings=[TENANT])


async def directory(relay: RelayProcess) -> dict[str, Any] | None:
    code, doc = await relay.get("status.json")
    if code != 200:
        return None
    [row] = [t for t in doc["tenants"] if t["name"] == TENANT]
    found: dict[str, Any] | None = row.get("directory")
    return found


def bodies(consumer: Consumer) -> list[dict[str, Any]]:
    return [json.loads(m.body) for m in consumer.messages]


async def test_a_killed_owners_listing_is_the_new_owners_base(tmp_path: Path) -> None:
    async with contextlib.AsyncExitStack() as stack:
        emu = await stack.enter_async_context(Emulator(port=0, hold=1.0))
        await control(
            emu,
            "api2/tenant",
            {"corpid": CORPID, "secrets": {"directory": SECRET}, "domains": [DOMAIN],
             "users": [{"userid": f"ann@{DOMAIN}", "name": "Ann"},
                       {"userid": f"bob@{DOMAIN}", "name": "Bob"}]},
        )  # fmt: skip
        prefix = await stack.enter_async_context(names())
        consumer = await stack.enter_async_context(Consumer(Broker(exchange=prefix, queue=prefix)))
        port_a, port_b = free_port(), free_port()
        a = RelayProcess(
            config(tmp_path, emu, prefix, "relay-a", port_a), tmp_path / "a.log", port_a
        )
        b = RelayProcess(
            config(tmp_path, emu, prefix, "relay-b", port_b), tmp_path / "b.log", port_b
        )
        await a.start()
        try:
            await consumer.wait_for(1, seconds=60)

            async def published() -> bool:
                state = await directory(a)
                return state is not None and state["snapshot_owed"] is False

            await eventually(published, seconds=30, what="A's listing on the broker")
            assert a.proc is not None
            a.proc.send_signal(signal.SIGKILL)
            await a.proc.wait()
            await control(emu, "api2/user", {"action": "add", "userid": f"cat@{DOMAIN}"})
            await control(emu, "api2/user", {"action": "mod", "userid": f"ann@{DOMAIN}",
                                             "name": "Anne"})  # fmt: skip
            await control(emu, "api2/user", {"action": "del", "userid": f"bob@{DOMAIN}"})
            await b.start()  # its own, empty journal
            await consumer.wait_for(5, seconds=60)

            async def unchanged_since() -> bool:
                state = await directory(b)
                return state is not None and state["last_outcome"] == "unchanged"

            await eventually(unchanged_since, seconds=30, what="B polling on, finding nothing")
        finally:
            if b.alive:
                assert await b.stop() == 0, f"B exited badly; see {tmp_path / 'b.log'}"
            if a.alive:
                await a.stop()
        baseline, *got = bodies(consumer)
        assert baseline["data"]["old_ver"] == 0
        assert len(got) == 4, [e["type"] for e in got]  # exactly once
        assert got[0]["type"] == "exmail.directory.changed"
        assert got[0]["data"]["old_ver"] == baseline["data"]["new_ver"]  # A's listing
        assert {e["type"]: e["data"]["alias"] for e in got[1:]} == {
            USER_ADDED: f"cat@{DOMAIN}",
            USER_UPDATED: f"ann@{DOMAIN}",
            USER_DELETED: f"bob@{DOMAIN}",
        }
        for event in got[1:]:
            data = event["data"]
            assert event["id"] == user_change_id(
                event["type"], TENANT, data["alias"], data["profile"]
            )
