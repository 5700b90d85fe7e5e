"""End to end, in-process: the second API's callback -> the relay's [http] server ->
journal -> the real RabbitMQ and a real webhook receiver (signatures checked with
``standardwebhooks``). The sender is relay.emulator._callback, over loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from standardwebhooks.webhooks import Webhook

from relay.app.settings import Settings
from relay.app.wiring import Running
from relay.core.events import mail_new
from relay.emulator import Emulator
from relay.emulator._callback import CallbackSender, CallbackTarget
from relay.ops.metrics import Metrics, PrometheusObserver
from tests.pipeline.support import ADMIN, Broker, Consumer, accounts, control, settings_for
from tests.pipeline.support import KEY as EMULATOR_KEY
from tests.support import running_relay
from tests.webhook.conftest import Receiver, hook, make_secret, receiver

__all__ = ["receiver"]  # the webhook tests' real HTTP receiver, as a fixture here

pytestmark = pytest.mark.rabbitmq

TOKEN = "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo"
KEY = "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt"
CORPID = "ww1436e0e65a779aee"


@dataclass
class Relay:
    running: Running
    target: CallbackTarget
    sender: CallbackSender
    http: aiohttp.ClientSession
    consumer: Consumer
    receiver: Receiver
    secret: str
    metrics: Metrics

    @property
    def url(self) -> str:
        assert self.running.server is not None
        return f"{self.running.server.url}callback/newco"

    async def journaled(self) -> int:
        return (await self.running.service.journal.stats()).events

    def outcomes(self) -> dict[str, float]:
        found: dict[str, float] = {}
        for metric in self.metrics.callbacks.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    found[sample.labels["outcome"]] = sample.value
        return found


@pytest.fixture
async def relay(broker: Broker, receiver: Receiver, tmp_path: Path) -> AsyncIterator[Relay]:
    secret = make_secret()
    settings = Settings(
        journal={"path": tmp_path / "journal.sqlite3"},
        tenants=[
            {"name": "newco", "api": "api2", "corpid": CORPID, "callback_token": TOKEN,
             "encoding_aes_key": KEY, "newmail_secret": "newmail-secret"},
        ],
        amqp=broker.amqp_settings(),
        sharding={"mode": "static"},
        http={"host": "127.0.0.1", "port": 0, "auth_token": "ops-token-0123456789"},
        webhooks=[hook(receiver, "cb", secret=[secret])],
        callback={"max_body_bytes": 4096, "max_age": 600, "body_timeout": 1},
    )  # fmt: skip
    metrics = Metrics(CollectorRegistry())
    async with (
        Consumer(broker) as consumer,
        running_relay(settings, observer=PrometheusObserver(metrics)) as running,
        aiohttp.ClientSession() as http,
    ):
        assert running.service.listeners == [], "an api2 tenant has no listen worker"
        assert running.server is not None
        target = CallbackTarget(
            url=f"{running.server.url}callback/newco", token=TOKEN, encoding_aes_key=KEY,
            corpid=CORPID, agentid="1000002",
        )  # fmt: skip
        sender = CallbackSender(http, timeout=5.0, attempts=3)
        yield Relay(running, target, sender, http, consumer, receiver, secret, metrics)


async def test_get_handshake_answers_exactly_the_plaintext(relay: Relay) -> None:
    verification = await relay.sender.verify_url(relay.target, echo="5927782489442352469")
    assert verification.ok, verification
    assert verification.body == b"5927782489442352469"
    # The notes' vector B, through the real server: the same answer.
    vector = await relay.sender.verify_url(
        relay.target, echo="5927782489442352469", timestamp="1610000000", nonce="1234567890",
        random_prefix=b"0123456789abcdef",
    )  # fmt: skip
    assert vector.status == 403 and vector.body == b"stale\n"  # 2021 is past max_age
    forged = CallbackTarget(relay.url, "otherToken", KEY, CORPID)
    assert (await relay.sender.verify_url(forged)).status == 403
    assert relay.outcomes().get("verified") == 1.0


async def test_a_mail_callback_reaches_both_sinks_once_with_the_documented_shape(
    relay: Relay,
) -> None:
    first = await relay.sender.send_mail(
        relay.target, mail_id="Hr/VDOqk59elyFLdE9n3JU3mnwRsuo5JVzC1tNmquI8=",
        to_user="zhangsanp@gzdev.com", from_user='"lisi@gzdev.com"<lisi@gzdev.com>',
        title="Hello 世界", new_count=11, timestamp=None, nonce="1372623149",
    )  # fmt: skip
    assert first.delivered and len(first.attempts) == 1 and first.attempts[0].body == b""
    # The same callback again (a sender's retry, another replica): the same request bytes.
    again = await relay.sender.send(
        relay.target, first.message, timestamp=first.timestamp, nonce=first.nonce
    )
    assert again.delivered
    unread = await relay.sender.send_unread(relay.target, user="zhangsanp@gzdev.com", unread=10)
    assert unread.delivered

    await relay.consumer.wait_for(2)
    got = await relay.receiver.wait_for("cb", 2, within=15)
    await asyncio.sleep(0.5)  # anything more would arrive now
    assert len(relay.consumer.messages) == 2 and len(relay.receiver.to("cb")) == 2
    assert await relay.journaled() == 2

    expected_id = mail_new(
        tenant="newco", user="zhangsanp@gzdev.com", sender="", receiver="", subject="",
        mail_id="Hr/VDOqk59elyFLdE9n3JU3mnwRsuo5JVzC1tNmquI8=", summary="", unread=None,
        now=datetime.now(UTC),
    ).id  # fmt: skip
    by_type = {m.type: m for m in relay.consumer.messages}
    mail = json.loads(by_type["exmail.mail.new"].body)
    assert by_type["exmail.mail.new"].routing_key == "newco.mail.new"
    assert by_type["exmail.mail.new"].message_id == mail["id"] == expected_id
    assert mail["source"] == "exmail-relay/newco" and mail["subject"] == "zhangsanp@gzdev.com"
    assert mail["data"] == {
        "user": "zhangsanp@gzdev.com",
        "mail_id": "Hr/VDOqk59elyFLdE9n3JU3mnwRsuo5JVzC1tNmquI8=",
        "sender": '"lisi@gzdev.com"<lisi@gzdev.com>',
        "receiver": "zhangsanp@gzdev.com",
        "subject": "Hello 世界",
        "summary": "",
        "unread": 11,
    }
    count = json.loads(by_type["exmail.mail.unread"].body)
    assert by_type["exmail.mail.unread"].routing_key == "newco.mail.unread"
    assert count["data"] == {"user": "zhangsanp@gzdev.com", "unread": 10}
    hooks = {Webhook(relay.secret).verify(r.body, r.headers)["type"]: r for r in got}
    assert json.loads(hooks["exmail.mail.new"].body) == mail
    assert hooks["exmail.mail.new"].headers["webhook-id"] == expected_id
    assert relay.outcomes() == {"accepted": 2.0, "duplicate": 1.0}


async def _post(relay: Relay, query: str, body: bytes) -> tuple[int, bytes]:
    async with relay.http.post(f"{relay.url}?{query}", data=body) as answer:
        return answer.status, await answer.read()


async def test_forged_tampered_replayed_and_malformed_callbacks_are_refused(
    relay: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="relay.callback")
    sender = CallbackSender(relay.http, attempts=1)
    mail = {"mail_id": "m-1", "to_user": "bob@gzdev.com", "from_user": "a", "title": "t"}
    # A forged signature: another Token.
    forged = await sender.send_mail(CallbackTarget(relay.url, "wrongToken", KEY, CORPID), **mail)
    assert forged.attempts[0].status == 403 and forged.attempts[0].body == b"bad-signature\n"
    # Another company's CorpID (the Token and key leaked, or a misrouted callback).
    other = await sender.send_mail(CallbackTarget(relay.url, TOKEN, KEY, "wwother"), **mail)
    assert other.attempts[0].body == b"wrong-corpid\n" and other.attempts[0].status == 403
    # A replay: a genuine callback from long ago.
    old = await sender.send_mail(relay.target, timestamp="1610007415", **mail)
    assert (old.attempts[0].status, old.attempts[0].body) == (403, b"stale\n")
    # Tampered ciphertext: one base64 character changed, the signature kept.
    good = await CallbackSender(relay.http, attempts=1).send_mail(relay.target, **mail)
    query = f"msg_signature={good.msg_signature}&timestamp={good.timestamp}&nonce={good.nonce}"
    sealed, _ = relay.target.crypto.seal(
        good.message, good.timestamp, good.nonce, random_prefix=b"r" * 16
    )
    tampered = ("B" if sealed[5] != "B" else "C").join((sealed[:5], sealed[6:]))
    assert (await _post(relay, query, f"<xml><Encrypt>{tampered}</Encrypt></xml>".encode()))[
        0
    ] == 403
    # Malformed: not XML, a DTD, no Encrypt, no parameters.
    assert await _post(relay, query, b"<xml><Encrypt>") == (400, b"malformed-body\n")
    dtd = b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml><Encrypt>&e;</Encrypt></xml>'
    assert await _post(relay, query, dtd) == (400, b"malformed-body\n")
    assert (await _post(relay, "", b"<xml/>"))[0] == 400
    # Oversize: refused before it is read.
    big = b"<xml><Encrypt>" + b"A" * 5000 + b"</Encrypt></xml>"
    assert (await _post(relay, query, big))[0] == 413
    # Truncated: a Content-Length the body never reaches.
    # Truncated: a Content-Length the body never reaches (the sender closed early), and
    # a chunked body whose encoding breaks off.
    head = f"POST /callback/newco?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    await _raw(relay, head + "Content-Length: 500\r\n\r\n<xml><Encrypt>abc", eof=True)
    chunked = head + "Transfer-Encoding: chunked\r\n\r\n10\r\n<xml><Encrypt>abc\r\nzz\r\n"
    assert await _raw(relay, chunked, eof=False) == 400
    # An unknown tenant.
    async with relay.http.post(relay.url.replace("newco", "nope") + "?" + query) as answer:
        assert answer.status == 404

    await asyncio.sleep(0.3)
    assert await relay.journaled() == 1, "only the one good mail"
    outcomes = relay.outcomes()
    for reason in (
        "bad-signature", "wrong-corpid", "stale", "malformed-body", "too-large", "incomplete-body",
    ):  # fmt: skip
        assert outcomes.get(reason, 0) >= 1, (reason, outcomes)
    # The audit lines: one per reason (throttled), naming it, never a secret or content.
    refused = [r for r in caplog.records if r.getMessage() == "callback refused"]
    assert {r.reason for r in refused} >= {"bad-signature", "wrong-corpid", "stale"}  # type: ignore[attr-defined]
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    for secret in (TOKEN, KEY, tampered, good.msg_signature, "bob@gzdev.com"):
        assert secret not in logged


async def _raw(relay: Relay, request: str, *, eof: bool) -> int | None:
    """Send ``request`` as bytes (half-closing after it with ``eof``): the status, if any."""
    assert relay.running.server is not None and relay.running.server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", relay.running.server.port)
    writer.write(request.encode())
    await writer.drain()
    if eof:
        writer.write_eof()
    try:
        line = await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return int(line.split()[1]) if line else None


async def test_a_slow_body_is_408_and_a_declared_foreign_codec_is_no_500(
    relay: Relay,
) -> None:
    """A sender that declares 100 bytes and sends 10 holds the connection no longer than
    ``[callback] body_timeout``; a body declaring a codec expat hands to Python (gbk) is
    read as UTF-8 (it was a 500 before any signature was checked)."""
    slow = (
        f"POST /callback/newco?msg_signature=x&timestamp=1&nonce=1 HTTP/1.1\r\n"
        f"Host: relay\r\nContent-Length: 100\r\n\r\n{'<' * 10}"
    )
    assert await _raw(relay, slow, eof=False) == 408
    xml = '<?xml version="1.0" encoding="gbk"?><xml><Encrypt>eA==</Encrypt></xml>'
    query = f"msg_signature={'0' * 40}&timestamp={int(time.time())}&nonce=1"
    status, _ = await _post(relay, query, xml.encode())
    assert status == 403, "read as UTF-8, then refused by the signature check"
    outcomes = relay.outcomes()
    assert outcomes.get("slow-body") == 1 and outcomes.get("bad-signature") == 1, outcomes
    assert (await relay.running.service.journal.stats()).backlog_events == 0


async def test_an_unknown_msgtype_is_answered_200_and_not_journaled(relay: Relay) -> None:
    message = f"<xml><CorpID>{CORPID}</CorpID><MsgType>Calendar</MsgType></xml>".encode()
    delivery = await relay.sender.send(relay.target, message)
    assert delivery.delivered and len(delivery.attempts) == 1
    assert await relay.journaled() == 0
    assert relay.outcomes() == {"ignored": 1.0}


async def test_the_ops_auth_does_not_cover_the_callback_but_covers_the_rest(relay: Relay) -> None:
    assert relay.running.server is not None
    async with relay.http.get(f"{relay.running.server.url}status.json") as answer:
        assert answer.status == 401
    delivery = await relay.sender.send_unread(relay.target, user="bob@gzdev.com", unread=1)
    assert delivery.delivered


async def test_a_relay_with_one_tenant_of_each_api(
    emulator: Emulator, broker: Broker, tmp_path: Path
) -> None:
    """The openapi tenant keeps its listen worker; the api2 tenant gets its callback."""
    users = await accounts(emulator)
    openapi = {
        "name": "acme", "client_id": ADMIN, "client_secret": EMULATOR_KEY,
        "api_url": emulator.api_url, "token_url": emulator.token_url,
        "login_url": emulator.login_url, "hold": 1.0,
    }  # fmt: skip
    api2 = {"name": "newco", "api": "api2", "corpid": CORPID, "callback_token": TOKEN,
            "encoding_aes_key": KEY}  # fmt: skip
    settings = settings_for(
        emulator, tmp_path, broker, tenants=[openapi, api2],
        http={"host": "127.0.0.1", "port": 0},
    )  # fmt: skip
    async with (
        Consumer(broker) as consumer,
        running_relay(settings) as running,
        aiohttp.ClientSession() as http,
    ):
        assert [li.tenant for li in running.service.listeners] == ["acme"]
        await consumer.wait_for(1)  # acme's bootstrap: directory.changed
        await control(emulator, "mail", {"to": users[0], "subject": "to acme"})
        assert running.server is not None
        target = CallbackTarget(f"{running.server.url}callback/newco", TOKEN, KEY, CORPID)
        sent = await CallbackSender(http).send_mail(
            target, mail_id="n-1", to_user="zhangsanp@gzdev.com", from_user="x", title="to newco"
        )
        assert sent.delivered
        # The openapi tenant has no callback URL.
        other = CallbackTarget(f"{running.server.url}callback/acme", TOKEN, KEY, CORPID)
        assert (await CallbackSender(http, attempts=1).send_unread(other, user="u", unread=1)) \
            .attempts[0].status == 404  # fmt: skip
        await consumer.wait_for(3)
    mails = {
        m.routing_key: json.loads(m.body)["data"]["subject"]
        for m in consumer.messages
        if m.type == "exmail.mail.new"
    }
    assert mails == {"acme.mail.new": "to acme", "newco.mail.new": "to newco"}
