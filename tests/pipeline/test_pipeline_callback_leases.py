"""Lease mode: any replica receives an api2 tenant's callback and journals it itself;
the same callback on two replicas is delivered with one id (docs/leases.md, "Callbacks
in lease mode"). Two relays in-process, the real RabbitMQ."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from relay.app.settings import Settings
from relay.emulator._callback import CallbackSender, CallbackTarget
from tests.pipeline.support import Broker, Consumer
from tests.support import AMQP_URL, delete_lease_names, running_relay

pytestmark = pytest.mark.rabbitmq

TOKEN = "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo"
KEY = "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt"
CORPID = "ww1436e0e65a779aee"
DEPLOYMENT_SECRET = "lease-test-deployment-secret-0123456789"


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = f"test.cblease.{uuid.uuid4().hex[:10]}"
    yield name
    await delete_lease_names(name)


def lease_settings(tmp_path: Path, replica: str, prefix: str) -> Settings:
    return Settings(
        journal={"path": tmp_path / f"{replica}.sqlite3"},
        tenants=[{"name": "newco", "api": "api2", "corpid": CORPID, "callback_token": TOKEN,
                  "encoding_aes_key": KEY}],
        amqp={"enabled": True, "url": AMQP_URL, "exchange": prefix, "queue": prefix},
        sharding={"replica_id": replica, "prefix": prefix, "heartbeat": 2,
                  "secret": DEPLOYMENT_SECRET},
        http={"host": "127.0.0.1", "port": 0},
        shutdown={"timeout": 3},
    )  # fmt: skip


async def test_a_callback_on_two_replicas_is_delivered_with_one_id(
    tmp_path: Path, prefix: str
) -> None:
    broker = Broker(exchange=prefix, queue=prefix)
    async with contextlib.AsyncExitStack() as stack:
        consumer = await stack.enter_async_context(Consumer(broker))
        a = await stack.enter_async_context(
            running_relay(lease_settings(tmp_path, "relay-a", prefix))
        )
        b = await stack.enter_async_context(
            running_relay(lease_settings(tmp_path, "relay-b", prefix))
        )
        assert a.server is not None and b.server is not None
        assert a.service.listeners == [] == b.service.listeners
        http = await stack.enter_async_context(aiohttp.ClientSession())
        sender = CallbackSender(http)
        to_a = CallbackTarget(f"{a.server.url}callback/newco", TOKEN, KEY, CORPID)
        to_b = CallbackTarget(f"{b.server.url}callback/newco", TOKEN, KEY, CORPID)
        first = await sender.send_mail(
            to_a, mail_id="lease-1", to_user="bob@gzdev.com", from_user="x", title="once"
        )
        # The sender's retry, after an answer it did not get, lands on the other replica.
        retry = await sender.send(to_b, first.message, timestamp=first.timestamp, nonce=first.nonce)
        assert first.delivered and retry.delivered
        # A callback only one replica receives is delivered once.
        other = await sender.send_unread(to_b, user="bob@gzdev.com", unread=4)
        assert other.delivered
        await consumer.wait_for(3)
        await asyncio.sleep(0.5)
    assert len(consumer.messages) == 3
    mails = [m for m in consumer.messages if m.type == "exmail.mail.new"]
    assert len(mails) == 2, "each replica journaled and delivered the callback it received"
    assert mails[0].message_id == mails[1].message_id == json.loads(mails[0].body)["id"]
    assert json.loads(mails[0].body) == {
        **json.loads(mails[1].body),
        "time": json.loads(mails[0].body)["time"],
    }, "the same event but for the time each replica ingested it"
