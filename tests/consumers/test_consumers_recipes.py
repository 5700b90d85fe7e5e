"""The consumer recipes of ``examples/`` (docs/consumers.md) against a real relay, the
emulator and RabbitMQ, using the official SDKs as an OA system would:

- Node.js: amqplib, the CloudEvents JS SDK (``HTTP.toEvent`` + ``validate()``),
  standardwebhooks;
- Python: aio-pika, the ``cloudevents`` SDK (its AMQP and HTTP bindings),
  standardwebhooks;
- Java: a webhook receiver with the JDK alone (``javax.crypto`` HMAC on the raw body),
  compiled with ``javac`` here.

Every event the relay journaled must be accepted once through each channel of each
recipe (nothing lost, nothing refused), every webhook must verify with both secrets of
a rotation, and in binary mode the SDKs must rebuild exactly the journaled event from
the ``cloudEvents_`` (or ``cloudEvents:``) headers and the body.
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from relay.core.amqp_message import ContentMode, HeaderPrefix
from relay.emulator import Emulator
from tests.consumers.support import (
    Recipe,
    java_command,
    journaled,
    node_command,
    python_command,
    recipes,
    traffic,
    undelivered,
)
from tests.pipeline.support import settings_for
from tests.support import AMQP_URL, eventually, running_relay

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(240)]

MAILS, READS = 40, 5  # and three directory changes: every event type


def secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


@pytest.fixture
async def exchange() -> AsyncIterator[str]:
    """A fresh exchange; it and every queue named after it are deleted afterwards."""
    name = f"test.consumers.{uuid.uuid4().hex[:12]}"
    yield name
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        for queue in (name, f"{name}.node", f"{name}.python"):
            await channel.queue_delete(queue)
        await channel.exchange_delete(name)


def recipe_env(exchange: str, name: str, secrets: list[str], *, amqp: bool) -> dict[str, str]:
    env = {"WEBHOOK_PORT": "0", "WEBHOOK_SECRETS": " ".join(secrets)}
    if amqp:
        env |= {"AMQP_URL": AMQP_URL, "AMQP_EXCHANGE": exchange, "AMQP_QUEUE": f"{exchange}.{name}"}
    return env


async def run_scenario(
    emulator: Emulator,
    tmp_path: Path,
    exchange: str,
    *,
    content_mode: ContentMode,
    header_prefix: HeaderPrefix = "cloudEvents_",
    java: bool = False,
) -> tuple[dict[str, dict[str, Any]], list[Recipe]]:
    """Start the recipes, then a relay publishing to them (webhooks signed with two
    secrets, as during a rotation), make traffic and wait for every delivery."""
    secrets = [secret(), secret()]
    made = [
        Recipe("node", node_command(), recipe_env(exchange, "node", secrets, amqp=True),
               tmp_path / "node.log"),
        Recipe("python", python_command(), recipe_env(exchange, "python", secrets, amqp=True),
               tmp_path / "python.log"),
    ]  # fmt: skip
    if java:
        command = java_command(tmp_path / "java-build")
        made.append(Recipe("java", command, recipe_env(exchange, "java", secrets, amqp=False),
                           tmp_path / "java.log"))  # fmt: skip
    journal = tmp_path / "journal.sqlite3"
    async with recipes(*made):
        hooks = [
            {"name": r.name, "url": f"http://127.0.0.1:{r.ready['webhook_port']}/hook",
             "secret": secrets, "retry_schedule": [0.2, 0.5, 1.0]}
            for r in made
        ]  # fmt: skip
        settings = settings_for(
            emulator,
            tmp_path,
            amqp={"enabled": True, "url": AMQP_URL, "exchange": exchange, "queue": exchange,
                  "content_mode": content_mode, "header_prefix": header_prefix},
            webhooks=hooks,
            tenant={"max_field_bytes": 1024},
        )  # fmt: skip
        async with running_relay(settings) as running:
            listener = running.service.listeners[0]
            await eventually(lambda: listener.status.state == "connected", what="a listen")
            await traffic(emulator, journal, mails=MAILS, reads=READS)

            def all_delivered() -> bool:
                refused = [r for recipe in made for r in recipe.refused]
                assert not refused, f"a recipe refused events: {refused[:3]}"
                return not undelivered(journal)

            await eventually(all_delivered, seconds=90, what="every delivery made")
            truth = journaled(journal)

            def all_accepted() -> bool:
                return all(r.ids("webhook") >= set(truth) for r in made) and all(
                    r.ids("amqp") >= set(truth) for r in made if r.name != "java"
                )

            await eventually(all_accepted, seconds=30, what="every event accepted")
    return truth, made


def check(truth: dict[str, dict[str, Any]], made: list[Recipe], mode: ContentMode) -> None:
    """Nothing lost, nothing refused, every signature verified, data unchanged."""
    figures = []
    for recipe in made:
        assert recipe.refused == [], f"{recipe.name} refused: {recipe.refused[:3]}"
        channels = ["webhook"] if recipe.name == "java" else ["amqp", "webhook"]
        for via in channels:
            records = [r for r in recipe.accepted if r["via"] == via]
            assert recipe.ids(via) == set(truth), f"{recipe.name}/{via} lost events"
            figures.append(f"{recipe.name}/{via} {len(recipe.ids(via))}/{len(truth)}")
            for record in records:
                if via == "webhook":
                    assert record["verified_with"] == [0, 1], record  # both rotated secrets
                    assert record["content_type"].startswith("application/cloudevents+json")
                else:
                    assert record["mode"] == mode
                if "type" in record:  # the SDK recipes: the event as the SDK rebuilt it
                    document = truth[record["id"]]
                    assert record["type"] == document["type"]
                    assert record["subject"] == document["subject"]
                    assert record["data"] == document["data"], record["id"]
    print(f"content_mode={mode}: accepted " + ", ".join(figures))


async def test_every_event_is_accepted_by_each_sdk_in_structured_mode(
    emulator: Emulator, tmp_path: Path, exchange: str
) -> None:
    truth, made = await run_scenario(
        emulator, tmp_path, exchange, content_mode="structured", java=True
    )
    assert [d["data"]["truncated"] for d in truth.values() if "truncated" in d["data"]] == [
        ["summary"]
    ]
    assert {d["type"] for d in truth.values()} == {
        "exmail.mail.new", "exmail.mail.unread", "exmail.directory.changed",
        "exmail.user.added", "exmail.user.updated", "exmail.user.deleted",
    }  # fmt: skip
    check(truth, made, "structured")


@pytest.mark.parametrize("prefix", ["cloudEvents_", "cloudEvents:"])
async def test_every_event_is_accepted_by_each_sdk_in_binary_mode(
    emulator: Emulator, tmp_path: Path, exchange: str, prefix: HeaderPrefix
) -> None:
    truth, made = await run_scenario(
        emulator, tmp_path, exchange, content_mode="binary", header_prefix=prefix
    )
    check(truth, made, "binary")
