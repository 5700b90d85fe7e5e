"""End to end, in-process: emulator on loopback -> relay -> the real RabbitMQ."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
import pytest

from relay.emulator import Emulator
from tests.pipeline.support import (
    Broker,
    Consumer,
    accounts,
    control,
    settings_for,
)
from tests.support import eventually, running_relay

pytestmark = pytest.mark.rabbitmq

CLOUDEVENT_KEYS = {"specversion", "id", "source", "type", "subject", "time", "data"}


async def test_500_mails_arrive_as_cloudevents_with_unique_ids(
    emulator: Emulator, broker: Broker, tmp_path: Path
) -> None:
    users = await accounts(emulator)
    async with (
        Consumer(broker) as consumer,
        running_relay(settings_for(emulator, tmp_path, broker)),
    ):
        mails = [{"to": users[i % len(users)], "subject": f"mail {i}"} for i in range(500)]
        answer = await control(emulator, "mail", {"mails": mails})
        mail_ids = set(answer["mail_ids"])
        assert len(mail_ids) == 500
        await consumer.wait_for(501)  # the bootstrap's directory.changed + 500 mails

    by_type: dict[str, list[aio_pika.abc.AbstractIncomingMessage]] = {}
    for message in consumer.messages:
        by_type.setdefault(message.type or "", []).append(message)
    assert sorted(by_type) == ["exmail.directory.changed", "exmail.mail.new"]
    mails_out = by_type["exmail.mail.new"]
    assert len(mails_out) == 500
    ids = set()
    for message in mails_out:
        doc = json.loads(message.body)
        assert doc.keys() >= CLOUDEVENT_KEYS
        assert doc["specversion"] == "1.0"
        assert doc["source"] == "exmail-relay/acme"
        assert doc["type"] == "exmail.mail.new"
        assert doc["subject"] == doc["data"]["user"]
        datetime.strptime(doc["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        assert message.message_id == doc["id"]
        assert message.routing_key == "acme.mail.new"
        assert message.content_type == "application/cloudevents+json"
        assert message.app_id == "exmail-relay"
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert message.timestamp is not None
        ids.add(doc["id"])
        mail_ids.discard(doc["data"]["mail_id"])
    assert len(ids) == 500, "every mail has its own id"
    assert mail_ids == set(), "every injected MailId came out"


async def test_directory_changes_become_user_events_and_move_the_checkpoint(
    emulator: Emulator, broker: Broker, tmp_path: Path
) -> None:
    async with (
        Consumer(broker) as consumer,
        running_relay(settings_for(emulator, tmp_path, broker)) as run,
    ):
        await consumer.wait_for(1)  # bootstrap
        await control(
            emulator,
            "user",
            {
                "action": "add",
                "alias": "newbie@example.com",
                "name": "New Bie",
                "parties": ["Sales"],
            },
        )
        await consumer.wait_for(3)
        await control(
            emulator, "user", {"action": "mod", "alias": "newbie@example.com", "name": "Renamed"}
        )
        await consumer.wait_for(5)
        last = await control(emulator, "user", {"action": "del", "alias": "newbie@example.com"})
        await consumer.wait_for(7)
        checkpoint = await run.service.journal.checkpoint("acme")

    docs = [json.loads(m.body) for m in consumer.messages]
    users = [d for d in docs if d["type"].startswith("exmail.user.")]
    assert [(d["type"], d["subject"]) for d in users] == [
        ("exmail.user.added", "newbie@example.com"),
        ("exmail.user.updated", "newbie@example.com"),
        ("exmail.user.deleted", "newbie@example.com"),
    ]
    added, updated, deleted = (d["data"] for d in users)
    assert added["profile"]["name"] == "New Bie"
    assert added["profile"]["parties"] == ["Sales"]
    assert updated["profile"]["name"] == "Renamed"
    assert deleted["profile"] is None
    changes = [d for d in docs if d["type"] == "exmail.directory.changed"]
    assert len(changes) == 4
    assert [c["data"]["count"] for c in changes[1:]] == [1, 1, 1]
    assert changes[-1]["data"]["new_ver"] == last["ver"]
    assert checkpoint == last["ver"]


async def test_snapshot_bootstrap_emits_every_account(
    emulator: Emulator, broker: Broker, tmp_path: Path
) -> None:
    users = await accounts(emulator)
    settings = settings_for(emulator, tmp_path, broker, tenant={"directory_bootstrap": "snapshot"})
    async with Consumer(broker) as consumer, running_relay(settings):
        await consumer.wait_for(len(users) + 1)
    added = {
        json.loads(m.body)["subject"] for m in consumer.messages if m.type == "exmail.user.added"
    }
    assert added == set(users)


async def test_a_restart_resumes_from_the_checkpoint_without_missing_changes(
    emulator: Emulator, broker: Broker, tmp_path: Path
) -> None:
    settings = settings_for(emulator, tmp_path, broker)
    async with Consumer(broker) as consumer:
        async with running_relay(settings):
            await consumer.wait_for(1)
        # While the relay is down the directory changes twice.
        await control(emulator, "user", {"action": "add", "alias": "a1@example.com", "name": "A1"})
        await control(emulator, "user", {"action": "add", "alias": "a2@example.com", "name": "A2"})
        async with running_relay(settings):
            await consumer.wait_for(4)
            await eventually(lambda: len(consumer.messages) >= 4, what="4 messages")
    types = [m.type for m in consumer.messages]
    assert types.count("exmail.directory.changed") == 2, "no second bootstrap after a restart"
    added = sorted(
        json.loads(m.body)["subject"] for m in consumer.messages if m.type == "exmail.user.added"
    )
    assert added == ["a1@example.com", "a2@example.com"]


async def test_unread_counts_are_relayed(
    emulator: Emulator, broker: Broker, tmp_path: Path
) -> None:
    user = (await accounts(emulator))[0]
    async with (
        Consumer(broker) as consumer,
        running_relay(settings_for(emulator, tmp_path, broker)),
    ):
        await consumer.wait_for(1)
        await control(emulator, "mail", {"to": user, "subject": "x"})
        await control(emulator, "mail", {"to": user, "subject": "y"})
        await control(emulator, "read", {"user": user, "count": 1})
        await consumer.wait_for(4)
    unread = [json.loads(m.body) for m in consumer.messages if m.type == "exmail.mail.unread"]
    assert len(unread) == 1
    assert unread[0]["data"]["user"] == user
    assert unread[0]["subject"] == user
    mails = [
        json.loads(m.body)["data"]["unread"]
        for m in consumer.messages
        if m.type == "exmail.mail.new"
    ]
    assert unread[0]["data"]["unread"] == mails[-1] - 1


async def test_a_lasting_user_get_refusal_does_not_block_the_directory(
    emulator: Emulator, broker: Broker, tmp_path: Path
) -> None:
    async with (
        Consumer(broker) as consumer,
        running_relay(settings_for(emulator, tmp_path, broker)) as run,
    ):
        await consumer.wait_for(1)
        await control(
            emulator,
            "faults",
            {"kind": "api_error", "count": 1, "path": "/openapi/user/get", "errcode": "1999"},
        )
        await control(emulator, "user", {"action": "add", "alias": "odd@example.com", "name": "O"})
        await consumer.wait_for(3)
        last = await control(emulator, "user", {"action": "add", "alias": "next@example.com"})
        await consumer.wait_for(5)
        assert await run.service.journal.checkpoint("acme") == last["ver"]
    users = [json.loads(m.body) for m in consumer.messages if m.type == "exmail.user.added"]
    assert [(u["subject"], u["data"]["profile"] is None) for u in users] == [
        ("odd@example.com", True),
        ("next@example.com", False),
    ]
