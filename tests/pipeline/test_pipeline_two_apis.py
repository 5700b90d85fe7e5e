"""End to end on real parts: one relay with a tenant of each Exmail API.

- ``acme`` (``api = "openapi"``): the emulator's demo company ``example.com``, by listen;
- ``newco`` (``api = "api2"``): the emulator's second-API tenant ``wwdemo0000000001``
  (``example.org``), whose callback URL (the relay's ``/callback/newco``) is saved in
  the emulator through its control route, with the admin console's GET handshake.

Mail and read changes are made through the emulator's control routes only; events are
read from the real RabbitMQ and a real webhook receiver (signatures checked with
``standardwebhooks``). The :func:`two_apis` fixture is the shared setup: directory and
SSO cases for both tenants belong here too, as more tests on the same fixture.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
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
from tests.pipeline.support import ADMIN, KEY, Broker, Consumer, control
from tests.support import TcpProxy, eventually, running_relay
from tests.webhook.conftest import Receiver, hook, make_secret, receiver

__all__ = ["receiver"]  # the webhook tests' real HTTP receiver, as a fixture here

pytestmark = pytest.mark.rabbitmq

CORPID = "wwdemo0000000001"  # the emulator's demo second-API tenant
TOKEN = "e2eCallbackToken0123"
AES_KEY = "e2eEncodingAESKeyForTheTwoApisTest012345678"
OPENAPI_USER = "bob@example.com"
API2_USER = "lisi@example.org"
TENANTS = ("acme", "newco")
HOOK = "two"


@dataclass
class TwoApis:
    """The emulator, the relay (both tenants), the consumer and the webhook receiver."""

    emulator: Emulator
    running: Running
    consumer: Consumer
    receiver: Receiver
    secret: str
    metrics: Metrics

    @property
    def callback_url(self) -> str:
        assert self.running.server is not None
        return f"{self.running.server.url}callback/newco"

    async def save_callback(self, *, status: int = 200, **settings: Any) -> dict[str, Any]:
        """``POST /_emulator/api2/callback`` for ``newco`` (the handshake unless
        ``verify=False``), with the relay's Token and key unless ``settings`` differ."""
        body = {"corpid": CORPID, "url": self.callback_url, "token": TOKEN,
                "encoding_aes_key": AES_KEY, "agentid": "1000002", **settings}  # fmt: skip
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{self.emulator.base_url}/_emulator/api2/callback", json=body) as resp,
        ):
            answer: dict[str, Any] = await resp.json()
            assert resp.status == status, answer
            return answer

    async def settled(self) -> None:
        """Every callback sent (all attempts) and every journaled event delivered."""
        assert await self.emulator.callbacks.drain() == 0
        journal = self.running.service.journal

        async def no_backlog() -> bool:
            return (await journal.stats()).backlog_events == 0

        await eventually(no_backlog, what="an empty journal backlog")

    def messages(self, kind: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
        return [m for m in self.consumer.messages if m.type == kind]

    def hooks(self, kind: str) -> list[tuple[dict[str, Any], dict[str, str]]]:
        """Every webhook of ``kind`` as (payload, headers), each signature verified."""
        found = []
        for request in self.receiver.to(HOOK):
            payload = Webhook(self.secret).verify(request.body, request.headers)
            if payload["type"] == kind:
                found.append((payload, request.headers))
        return found

    async def arrived(self, kind: str, count: int) -> None:
        await eventually(
            lambda: len(self.messages(kind)) >= count and len(self.hooks(kind)) >= count,
            seconds=30,
            what=f"{count} {kind} on both sinks",
        )

    def outcomes(self) -> dict[str, float]:
        found: dict[str, float] = {}
        for metric in self.metrics.callbacks.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    found[sample.labels["outcome"]] = sample.value
        return found


@pytest.fixture
async def two_apis(broker: Broker, receiver: Receiver, tmp_path: Path) -> AsyncIterator[TwoApis]:
    secret = make_secret()
    async with Emulator(port=0, hold=1.0) as emulator:
        settings = Settings(
            journal={"path": tmp_path / "journal.sqlite3"},
            tenants=[
                {"name": "acme", "client_id": ADMIN, "client_secret": KEY,
                 "api_url": emulator.api_url, "token_url": emulator.token_url,
                 "login_url": emulator.login_url, "hold": 1.0},
                {"name": "newco", "api": "api2", "corpid": CORPID, "api_url": emulator.api2_url,
                 "contact_secret": "demo-directory-secret", "sso_secret": "demo-sso-secret",
                 "newmail_secret": "demo-newmail-secret", "callback_token": TOKEN,
                 "encoding_aes_key": AES_KEY, "directory_interval": 1},
            ],
            amqp=broker.amqp_settings(),
            sharding={"mode": "static"},
            http={"host": "127.0.0.1", "port": 0, "auth_token": "ops-token-0123456789"},
            webhooks=[hook(receiver, HOOK, secret=[secret])],
        )  # fmt: skip
        metrics = Metrics(CollectorRegistry())
        async with (
            Consumer(broker) as consumer,
            running_relay(settings, observer=PrometheusObserver(metrics)) as running,
        ):
            relay = TwoApis(emulator, running, consumer, receiver, secret, metrics)
            saved = await relay.save_callback()
            assert saved["saved"] is True and saved["verification"]["ok"] is True
            yield relay


def _shape(event: dict[str, Any]) -> tuple[list[str], list[str]]:
    return sorted(event), sorted(event["data"])


async def test_mail_to_each_tenant_is_one_event_per_sink_with_one_shape(
    two_apis: TwoApis,
) -> None:
    await control(two_apis.emulator, "mail", {"to": OPENAPI_USER, "sender": "a@x.cn",
                                              "subject": "Hi A", "summary": "s"})  # fmt: skip
    sent = await control(two_apis.emulator, "api2/mail",
                         {"to": API2_USER, "from": "a@x.cn", "title": "Hi 新"})  # fmt: skip
    await two_apis.arrived("exmail.mail.new", 2)
    await two_apis.settled()

    messages = two_apis.messages("exmail.mail.new")
    assert sorted(m.routing_key or "" for m in messages) == [f"{t}.mail.new" for t in TENANTS], (
        "exactly one per tenant on the broker, one routing key pattern"
    )
    bodies = {json.loads(m.body)["source"]: json.loads(m.body) for m in messages}
    openapi, api2 = bodies["exmail-relay/acme"], bodies["exmail-relay/newco"]
    assert _shape(openapi) == _shape(api2), "the same event shape for both APIs"
    assert openapi["subject"] == OPENAPI_USER and api2["subject"] == API2_USER
    assert api2["data"]["mail_id"] == sent["mail_id"] and api2["data"]["subject"] == "Hi 新"
    assert api2["data"]["unread"] == sent["count"]
    for m in messages:
        assert m.message_id == json.loads(m.body)["id"]

    hooks = two_apis.hooks("exmail.mail.new")
    assert len(hooks) == 2, "exactly one per tenant on the webhook"
    by_source = {payload["source"]: (payload, headers) for payload, headers in hooks}
    for source, body in bodies.items():
        payload, headers = by_source[source]
        assert payload == body and headers["webhook-id"] == body["id"]


async def test_an_unread_change_of_each_tenant_is_one_unread_event(two_apis: TwoApis) -> None:
    await control(two_apis.emulator, "read", {"user": OPENAPI_USER, "count": 1})
    read = await control(two_apis.emulator, "api2/read", {"user": API2_USER, "count": 1})
    await two_apis.arrived("exmail.mail.unread", 2)
    await two_apis.settled()

    messages = two_apis.messages("exmail.mail.unread")
    assert sorted(m.routing_key or "" for m in messages) == [f"{t}.mail.unread" for t in TENANTS]
    bodies = {json.loads(m.body)["source"]: json.loads(m.body) for m in messages}
    assert _shape(bodies["exmail-relay/acme"]) == _shape(bodies["exmail-relay/newco"])
    assert bodies["exmail-relay/newco"]["data"] == {"user": API2_USER, "unread": read["unread"]}
    assert len(two_apis.hooks("exmail.mail.unread")) == 2


async def test_the_emulators_retries_of_one_callback_make_one_event(two_apis: TwoApis) -> None:
    # The relay answers, the answer is lost twice (the emulator's lose_answers fault): the
    # emulator sends the same callback three times, the relay journals it once.
    await two_apis.save_callback(lose_answers=2, attempts=3)
    sent = await control(two_apis.emulator, "api2/mail", {"to": API2_USER, "title": "retried"})
    await two_apis.arrived("exmail.mail.new", 1)
    await two_apis.settled()

    [delivery] = two_apis.emulator.callbacks.snapshot(CORPID)["deliveries"]
    assert [(a["status"], a["error"]) for a in delivery["attempts"]] == [
        (200, "answer_lost"), (200, "answer_lost"), (200, None),
    ]  # fmt: skip
    [message] = two_apis.messages("exmail.mail.new")
    [(payload, headers)] = two_apis.hooks("exmail.mail.new")
    expected = mail_new(
        tenant="newco", user=API2_USER, sender="", receiver="", subject="",
        mail_id=sent["mail_id"], summary="", unread=None, now=datetime.now(UTC),
    ).id  # fmt: skip
    assert message.message_id == payload["id"] == headers["webhook-id"] == expected
    assert two_apis.outcomes().get("duplicate") == 2.0


class CountingProxy(TcpProxy):
    """A :class:`TcpProxy` that counts the connections it accepted."""

    accepted = 0

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        await super()._accept(reader, writer)


async def test_a_slow_network_makes_the_emulator_retry_and_still_one_event(
    two_apis: TwoApis,
) -> None:
    # The callback goes through a proxy that holds every byte for a while: the emulator's
    # first attempt times out and it sends again; the held request reaches the relay too.
    assert two_apis.running.server is not None
    relay_port = int(two_apis.running.server.url.rsplit(":", 1)[1].strip("/"))
    proxy = CountingProxy("127.0.0.1", relay_port)
    await proxy.start()
    try:
        url = f"http://127.0.0.1:{proxy.port}/callback/newco"
        await two_apis.save_callback(url=url, timeout=1.0, attempts=5)  # handshake via proxy
        proxy.stall()
        before = proxy.accepted
        sent = await control(two_apis.emulator, "api2/mail", {"to": API2_USER, "title": "slow"})
        await eventually(lambda: proxy.accepted >= before + 2, what="a second attempt")
        proxy.resume()
        await two_apis.arrived("exmail.mail.new", 1)
        await two_apis.settled()
    finally:
        await proxy.stop()
    [delivery] = two_apis.emulator.callbacks.snapshot(CORPID)["deliveries"]
    assert delivery["delivered"] and delivery["attempts"][0]["error"] == "timeout"
    [message] = two_apis.messages("exmail.mail.new")
    assert json.loads(message.body)["data"]["mail_id"] == sent["mail_id"]
    assert [p["id"] for p, _ in two_apis.hooks("exmail.mail.new")] == [message.message_id]
    # How many of the held attempts the relay read before their connection's reset is up
    # to the kernel; whatever it read, it accepted once (the lost-answer test counts them).
    assert two_apis.outcomes()["accepted"] == 1.0


async def test_forged_replayed_and_tampered_callbacks_are_refused(two_apis: TwoApis) -> None:
    emulator = two_apis.emulator
    # Forged: the emulator signs with another Token (saved without the handshake, which
    # would fail); every attempt is refused, the sender gives up.
    await two_apis.save_callback(status=400, token="someOtherToken")  # the handshake fails
    await two_apis.save_callback(token="someOtherToken", verify=False, attempts=2)
    await control(emulator, "api2/mail", {"to": API2_USER, "title": "forged"})
    # Another company's CorpID with the right Token and key (a leaked key, a misroute).
    other = {"corpid": "wwother", "domains": ["other.test"], "secrets": {"newmail": "x1"},
             "users": [{"userid": "eve@other.test"}]}  # fmt: skip
    await control(emulator, "api2/tenant", other)
    misrouted = {"corpid": "wwother", "url": two_apis.callback_url, "token": TOKEN,
                 "encoding_aes_key": AES_KEY, "verify": False, "attempts": 1}  # fmt: skip
    await control(emulator, "api2/callback", misrouted)
    await control(emulator, "api2/mail", {"to": "eve@other.test", "title": "misrouted"})
    assert await emulator.callbacks.drain() == 0
    refused = emulator.callbacks.snapshot()["deliveries"]
    assert [d["delivered"] for d in refused] == [False, False]
    assert [a["body"] for a in refused[0]["attempts"]] == ["bad-signature\n"] * 2
    assert [a["body"] for a in refused[1]["attempts"]] == ["wrong-corpid\n"]

    # Replayed (a genuine callback from long ago) and tampered (ciphertext changed).
    async with aiohttp.ClientSession() as http:
        sender = CallbackSender(http, attempts=1)
        target = CallbackTarget(two_apis.callback_url, TOKEN, AES_KEY, CORPID)
        fields = {"mail_id": "m-1", "to_user": API2_USER, "from_user": "a", "title": "t"}
        old = await sender.send_mail(target, timestamp="1610007415", **fields)
        assert (old.attempts[0].status, old.attempts[0].body) == (403, b"stale\n")
        sealed, _ = target.crypto.seal(b"<xml/>", "1", "2", random_prefix=b"r" * 16)
        good = await CallbackSender(http, attempts=1).send_mail(target, **fields)
        assert good.delivered  # the genuine one, as a marker below
        tampered = ("B" if sealed[7] != "B" else "C").join((sealed[:7], sealed[8:]))
        query = f"msg_signature={good.msg_signature}&timestamp={good.timestamp}&nonce={good.nonce}"
        async with http.post(
            f"{two_apis.callback_url}?{query}",
            data=f"<xml><Encrypt>{tampered}</Encrypt></xml>".encode(),
        ) as answer:
            assert answer.status == 403

    # Nothing refused was journaled: the genuine marker is the only api2 event.
    await two_apis.arrived("exmail.mail.new", 1)
    await two_apis.settled()
    [message] = two_apis.messages("exmail.mail.new")
    assert json.loads(message.body)["data"]["mail_id"] == "m-1"
    assert len(two_apis.hooks("exmail.mail.new")) == 1
    outcomes = two_apis.outcomes()
    assert outcomes.get("accepted") == 1.0 and "duplicate" not in outcomes, outcomes


async def test_directory_changes_of_each_tenant_are_one_shape_of_user_events(
    two_apis: TwoApis,
) -> None:
    """The first API by ``listen`` and ``Ver``, the second by a listing diffed every
    second: an added and a deleted member of each tenant are the same events."""
    emulator = two_apis.emulator
    await control(emulator, "user", {"action": "add", "alias": "hire@example.com", "name": "Hire"})
    await control(emulator, "api2/user",
                  {"action": "add", "userid": "hire@example.org", "name": "Hire"})  # fmt: skip
    await two_apis.arrived("exmail.user.added", 2)
    await control(emulator, "user", {"action": "del", "alias": "hire@example.com"})
    await control(emulator, "api2/user", {"action": "del", "userid": "hire@example.org"})
    await two_apis.arrived("exmail.user.deleted", 2)
    await two_apis.settled()

    for kind in ("exmail.user.added", "exmail.user.deleted"):
        messages = two_apis.messages(kind)
        assert sorted(m.routing_key or "" for m in messages) == [
            f"{t}.{kind.removeprefix('exmail.')}" for t in TENANTS
        ], f"exactly one {kind} per tenant on the broker"
        bodies = {json.loads(m.body)["source"]: json.loads(m.body) for m in messages}
        openapi, api2 = bodies["exmail-relay/acme"], bodies["exmail-relay/newco"]
        assert _shape(openapi) == _shape(api2), f"one {kind} shape for both APIs"
        assert openapi["subject"] == "hire@example.com" and api2["subject"] == "hire@example.org"
        assert len(two_apis.hooks(kind)) == 2, f"exactly one {kind} per tenant on the webhook"
