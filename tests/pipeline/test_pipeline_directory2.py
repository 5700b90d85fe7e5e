"""End to end, in-process: an api2 tenant's directory, changed through the emulator's
control routes, listed by the relay on an interval and diffed against the listing in its
journal -> ``exmail.user.*`` events on the real RabbitMQ, exactly once; a failing listing
emits nothing; a restart emits nothing again."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from relay.app.settings import Settings
from relay.app.wiring import Running
from relay.core.events import USER_ADDED, USER_DELETED, USER_UPDATED, user_change_id
from relay.emulator import Emulator
from relay.ops.metrics import Metrics, PrometheusObserver
from tests.pipeline.support import Broker, Consumer, control
from tests.support import eventually, running_relay

pytestmark = pytest.mark.rabbitmq

CORPID = "wwdirectory000001"
SECRET = "directory-secret-1"
DOMAIN = "dir.test"


def settings(emu: Emulator, broker: Broker, path: Path, **tenant: Any) -> Settings:
    return Settings(
        journal={"path": path},
        tenants=[
            {"name": "dirco", "api": "api2", "corpid": CORPID, "contact_secret": SECRET,
             "callback_token": "tok12345", "encoding_aes_key": "k" * 43,
             "api_url": emu.api2_url, "directory_interval": 1, "request_timeout": 3,
             **tenant},
        ],
        amqp=broker.amqp_settings(),
        sharding={"mode": "static"},
        http={"host": "127.0.0.1", "port": 0, "auth_token": "ops-token-0123456789"},
    )  # fmt: skip


async def user(emu: Emulator, action: str, userid: str, **fields: Any) -> None:
    await control(emu, "api2/user", {"action": action, "userid": userid, **fields})


@pytest.fixture
async def company(emulator: Emulator) -> Emulator:
    await control(
        emulator,
        "api2/tenant",
        {"corpid": CORPID, "secrets": {"directory": SECRET}, "domains": [DOMAIN],
         "departments": ["R&D", "R&D/Mail"],
         "users": [{"userid": f"ann@{DOMAIN}", "name": "Ann", "departments": ["R&D/Mail"]},
                   {"userid": f"bob@{DOMAIN}", "name": "Bob", "gender": 1}]},
    )  # fmt: skip
    return emulator


@asynccontextmanager
async def relay(s: Settings, metrics: Metrics) -> AsyncIterator[Running]:
    async with running_relay(s, observer=PrometheusObserver(metrics)) as running:
        yield running


def bodies(consumer: Consumer) -> list[dict[str, Any]]:
    return [json.loads(m.body) for m in consumer.messages]


def polls(metrics: Metrics) -> dict[str, float]:
    found: dict[str, float] = {}
    for metric in metrics.directory_polls.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                found[sample.labels["outcome"]] = sample.value
    return found


def failed(metrics: Metrics) -> float:
    ok = ("changed", "unchanged", "baseline")
    return sum(v for k, v in polls(metrics).items() if k not in ok)


async def settle(metrics: Metrics, more: int = 3) -> None:
    """Wait until ``more`` further polls have finished, whatever their outcome."""
    start = sum(polls(metrics).values())
    await eventually(lambda: sum(polls(metrics).values()) >= start + more, what="more polls")


async def test_changes_become_user_events_once_and_a_restart_emits_nothing(
    company: Emulator, broker: Broker, tmp_path: Path
) -> None:
    s = settings(company, broker, tmp_path / "j.sqlite3")
    metrics = Metrics(CollectorRegistry())
    async with Consumer(broker) as consumer:
        async with relay(s, metrics) as running:
            # The baseline: one exmail.directory.changed from 0, no user event ("skip").
            await consumer.wait_for(1)
            await settle(metrics)
            [baseline] = bodies(consumer)
            assert baseline["type"] == "exmail.directory.changed"
            assert baseline["data"]["old_ver"] == 0 and baseline["data"]["count"] == 2
            assert consumer.messages[0].routing_key == "dirco.directory.changed"

            # Three changes seen by one poll: listings fail (and emit nothing) meanwhile.
            await control(company, "faults", {"kind": "http_500", "count": 1000,
                                               "path": "/cgi-bin/user/list"})  # fmt: skip
            await user(company, "add", f"cat@{DOMAIN}", name="Cat", position="Ops")
            await user(company, "mod", f"ann@{DOMAIN}", position="Lead")
            await user(company, "del", f"bob@{DOMAIN}")
            await control(company, "faults", method="DELETE")
            await consumer.wait_for(5)
            await settle(metrics)
            got = bodies(consumer)[1:]
            assert len(got) == 4, got  # exactly once: the next polls found nothing new
            assert got[0]["type"] == "exmail.directory.changed"
            assert got[0]["data"]["old_ver"] == baseline["data"]["new_ver"]
            assert got[0]["data"]["count"] == 3
            by_type = {e["type"]: e for e in got[1:]}
            assert set(by_type) == {USER_ADDED, USER_UPDATED, USER_DELETED}
            keys = {m.routing_key for m in consumer.messages[2:]}
            assert keys == {"dirco.user.added", "dirco.user.updated", "dirco.user.deleted"}
            ann = by_type[USER_UPDATED]["data"]
            assert ann["alias"] == f"ann@{DOMAIN}" and ann["change"] == "updated"
            assert ann["profile"]["position"] == "Lead"
            assert ann["profile"]["parties"] == ["R&D/Mail"]
            assert ann["profile"]["open_type"] == 1
            cat = by_type[USER_ADDED]["data"]
            assert cat["profile"]["name"] == "Cat" and cat["profile"]["parties"] == []
            assert by_type[USER_DELETED]["data"]["profile"] is None
            # The ids are the first API's: tenant, account, change, profile.
            for event in got[1:]:
                data = event["data"]
                assert event["id"] == user_change_id(
                    event["type"], "dirco", data["alias"], data["profile"]
                )
            assert polls(metrics).get("changed") == 1.0
            status = (await running.service.status()).to_json()
            [row] = [t for t in status["tenants"] if t["name"] == "dirco"]
            assert row["directory"]["members"] == 2 and row["directory"]["polling"]
            assert row["directory"]["last_changes"] == {"added": 1, "updated": 1, "deleted": 1}

        # A restart with the same journal: the stored listing is the baseline, no re-emit.
        metrics = Metrics(CollectorRegistry())
        async with relay(s, metrics):
            await settle(metrics)
            await asyncio.sleep(0.3)
            assert len(consumer.messages) == 5
            assert polls(metrics).get("unchanged", 0) >= 3 and "baseline" not in polls(metrics)


async def test_a_failing_listing_emits_nothing_and_keeps_the_stored_one(
    company: Emulator, broker: Broker, tmp_path: Path
) -> None:
    s = settings(company, broker, tmp_path / "j.sqlite3")
    metrics = Metrics(CollectorRegistry())
    async with Consumer(broker) as consumer, relay(s, metrics) as running:
        await consumer.wait_for(1)
        await settle(metrics, 1)
        # user/list answers a truncated body, then HTTP 500s, then an empty company.
        await control(company, "faults", {"kind": "malformed", "count": 1000,
                                           "path": "/cgi-bin/user/list"})  # fmt: skip
        await user(company, "del", f"ann@{DOMAIN}")
        await eventually(lambda: failed(metrics) >= 1, what="a failed poll")
        await control(company, "faults", {"kind": "http_500", "count": 1000,
                                           "path": "/cgi-bin/department/list"})  # fmt: skip
        await eventually(lambda: failed(metrics) >= 2, what="another failed poll")
        await asyncio.sleep(0.3)
        assert len(consumer.messages) == 1, "a failed listing emits nothing"
        status = (await running.service.status()).to_json()
        [row] = [t for t in status["tenants"] if t["name"] == "dirco"]
        assert row["directory"]["failures"] >= 1 and row["directory"]["last_error"]
        assert SECRET not in json.dumps(status)
        await control(company, "faults", method="DELETE")
        # Healed: the deletion made meanwhile is reported once.
        await consumer.wait_for(3)
        await settle(metrics)
        got = bodies(consumer)[1:]
        assert [e["type"] for e in got] == ["exmail.directory.changed", USER_DELETED]
        assert got[1]["subject"] == f"ann@{DOMAIN}"


async def test_an_empty_listing_after_a_full_one_is_refused(
    company: Emulator, broker: Broker, tmp_path: Path
) -> None:
    s = settings(company, broker, tmp_path / "j.sqlite3")
    metrics = Metrics(CollectorRegistry())
    async with Consumer(broker) as consumer, relay(s, metrics):
        await consumer.wait_for(1)
        await control(company, "faults", {"kind": "api_error", "count": 1000,
                                           "path": "/cgi-bin/user/list", "errcode": 0,
                                           "error": "ok"})  # fmt: skip
        await eventually(lambda: polls(metrics).get("implausible", 0) >= 2, what="refused")
        assert len(consumer.messages) == 1, "never 'everyone deleted' from an empty answer"


async def test_snapshot_bootstrap_emits_every_member_as_added(
    company: Emulator, broker: Broker, tmp_path: Path
) -> None:
    s = settings(company, broker, tmp_path / "j.sqlite3", directory_bootstrap="snapshot")
    metrics = Metrics(CollectorRegistry())
    async with Consumer(broker) as consumer, relay(s, metrics):
        await consumer.wait_for(3)
        await settle(metrics)
        assert [e["type"] for e in bodies(consumer)] == [
            "exmail.directory.changed",
            USER_ADDED,
            USER_ADDED,
        ]
