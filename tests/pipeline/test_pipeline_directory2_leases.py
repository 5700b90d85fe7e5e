"""Lease mode: only the owner of an api2 tenant's shard polls its directory; after a
takeover the new owner polls, diffing against the listing the old owner published: no
second baseline, and the next change is reported from the old owner's fingerprint
(docs/leases.md, "Directory polls of api2 tenants"). Two relays in-process, the real
RabbitMQ, the emulator. tests/pipeline/test_pipeline_directory2_takeover.py holds the
changes made between the two owners, forged snapshots and failed reads."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from relay.app.settings import Settings
from relay.app.wiring import Running
from relay.emulator import Emulator
from tests.pipeline.support import Broker, Consumer, control
from tests.support import AMQP_URL, delete_lease_names, eventually, running_relay

pytestmark = pytest.mark.rabbitmq

CORPID = "wwdirlease0000001"
SECRET = "directory-lease-secret"
DOMAIN = "lease.test"
DEPLOYMENT_SECRET = "lease-test-deployment-secret-0123456789"


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = f"test.dirlease.{uuid.uuid4().hex[:10]}"
    yield name
    await delete_lease_names(name, listings=["leaseco"])


def lease_settings(emu: Emulator, tmp_path: Path, replica: str, prefix: str) -> Settings:
    return Settings(
        journal={"path": tmp_path / f"{replica}.sqlite3"},
        tenants=[{"name": "leaseco", "api": "api2", "corpid": CORPID, "contact_secret": SECRET,
                  "callback_token": "tok12345", "encoding_aes_key": "k" * 43,
                  "api_url": emu.api2_url, "directory_interval": 1}],
        amqp={"enabled": True, "url": AMQP_URL, "exchange": prefix, "queue": prefix},
        sharding={"replica_id": replica, "prefix": prefix, "heartbeat": 2,
                  "secret": DEPLOYMENT_SECRET},
        http={"host": "127.0.0.1", "port": 0},
        shutdown={"timeout": 3},
    )  # fmt: skip


def polling(running: Running) -> bool:
    pollers = running.service.pollers
    assert pollers is not None
    return bool(pollers.running) and pollers.states["leaseco"].polling


async def test_only_the_owner_polls_and_a_takeover_baseline_keeps_the_id(
    emulator: Emulator, tmp_path: Path, prefix: str
) -> None:
    await control(
        emulator,
        "api2/tenant",
        {"corpid": CORPID, "secrets": {"directory": SECRET}, "domains": [DOMAIN],
         "users": [{"userid": f"ann@{DOMAIN}"}, {"userid": f"bob@{DOMAIN}"}]},
    )  # fmt: skip
    broker = Broker(exchange=prefix, queue=prefix)
    async with contextlib.AsyncExitStack() as stack:
        consumer = await stack.enter_async_context(Consumer(broker))
        stacks = {}
        replicas = {}
        for name in ("relay-a", "relay-b"):
            stacks[name] = await stack.enter_async_context(contextlib.AsyncExitStack())
            replicas[name] = await stacks[name].enter_async_context(
                running_relay(lease_settings(emulator, tmp_path, name, prefix))
            )
        a, b = replicas["relay-a"], replicas["relay-b"]
        owner, other = await eventually(
            lambda: ("relay-a", b) if polling(a) else ("relay-b", a) if polling(b) else None,
            what="one replica polling",
        )
        await consumer.wait_for(1)
        assert not polling(other), "only the shard's owner polls"
        baseline = json.loads(consumer.messages[0].body)
        assert baseline["type"] == "exmail.directory.changed"
        # The owner goes (SIGTERM-like: a planned release); the other takes over.
        await stacks[owner].aclose()
        await eventually(lambda: polling(other), seconds=40, what="the other replica polling")
        state = (other.service.pollers or pytest.fail("no pollers")).states["leaseco"]
        # The old owner's listing, read from the broker: the first poll finds it unchanged.
        await eventually(lambda: state.last_outcome == "unchanged", what="an unchanged poll")
        assert len(consumer.messages) == 1, "no second baseline after the takeover"
        await control(emulator, "api2/user", {"action": "add", "userid": f"cat@{DOMAIN}"})
        await consumer.wait_for(3)
        changed, added = (json.loads(m.body) for m in consumer.messages[1:])
        assert changed["type"] == "exmail.directory.changed"
        assert changed["data"]["old_ver"] == baseline["data"]["new_ver"]
        assert added["type"] == "exmail.user.added"


async def test_polls_fenced_by_a_freshness_lapse_go_on_while_the_shard_is_held(
    emulator: Emulator, tmp_path: Path, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fence says "not owner" for a moment (the lease's freshness lapsed on a loaded
    loop) while the lease stays held: the poller is fenced, then polls again once the
    fence says the shard is held. Before, it stayed stopped until the shard moved."""
    await control(
        emulator,
        "api2/tenant",
        {"corpid": CORPID, "secrets": {"directory": SECRET}, "domains": [DOMAIN],
         "users": [{"userid": f"ann@{DOMAIN}"}]},
    )  # fmt: skip
    async with running_relay(lease_settings(emulator, tmp_path, "relay-l", prefix)) as r:
        await eventually(lambda: polling(r), what="polling")
        pollers = r.service.pollers
        runner = r.service.runner
        assert pollers is not None and runner is not None
        state = pollers.states["leaseco"]
        await eventually(lambda: len(runner.leases.owned) == 16, what="every shard held")
        held = runner.leases.owned
        monkeypatch.setattr(runner.leases, "holds", lambda shard: False)
        await eventually(
            lambda: state.last_outcome == "fenced" and not state.polling,
            what="the poller fenced",
        )
        assert runner.leases.owned == held, "no lease was lost"
        monkeypatch.undo()
        await eventually(
            lambda: state.polling and state.last_outcome != "fenced",
            seconds=10,
            what="polling again",
        )
        assert "leaseco" in pollers.running
        assert pollers.resumed == {"leaseco": 1}, "counted once"
