"""The callback sender (relay.emulator._callback) against a real HTTP receiver on
loopback: attempts, timeouts, the answer check, the envelope, what it records."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from relay.core.callback_xml import envelope_ciphertext
from relay.core.wecom_crypto import decrypt, signature
from relay.emulator._callback import CallbackSender, CallbackTarget
from tests.webhook.conftest import Answer, Receiver, receiver

__all__ = ["receiver"]  # the webhook tests' real HTTP receiver, as a fixture here

TOKEN = "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo"
KEY = "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt"
CORPID = "ww1436e0e65a779aee"
VECTOR_B_MAIL = (
    "scEag1243Fmy/fYz4Ux8D1cEXErysoAOk7iWfwXdAS/30L4oflASdiNyxrf0RE98FWI9/YL1gS5JkhylioyrG3hsUO"
)


def _target(receiver: Receiver, path: str = "cb", **kw: str) -> CallbackTarget:
    return CallbackTarget(receiver.url(path), TOKEN, KEY, CORPID, **kw)


async def test_vector_b_mail_is_sent_byte_exact(receiver: Receiver) -> None:
    async with aiohttp.ClientSession() as http:
        sender = CallbackSender(http)
        delivery = await sender.send_mail(
            _target(receiver, agentid="1000002"),
            mail_id="Hr/VDOqk59elyFLdE9n3JU3mnwRsuo5JVzC1tNmquI8=",
            to_user="zhangsanp@gzdev.com", from_user='"lisi@gzdev.com"<lisi@gzdev.com>',
            title="Hello World", time=1610007415, new_count=11, timestamp="1610007415",
            nonce="1372623149", random_prefix=b"0123456789abcdef",
        )  # fmt: skip
    assert delivery.delivered and delivery.kind == "Mail"
    assert delivery.msg_signature == "ab3bed42d6bab19f334615b7fb8cf0954f0083f4"
    [request] = receiver.to("cb")
    sealed = envelope_ciphertext(request.body)
    assert sealed.startswith(VECTOR_B_MAIL)
    assert request.body.startswith(
        b"<xml><CorpID><![CDATA[ww1436e0e65a779aee]]></CorpID><AgentID><![CDATA[1000002]]>"
    )
    assert signature(TOKEN, "1610007415", "1372623149", sealed) == delivery.msg_signature
    assert sender.history == [delivery]


async def test_three_attempts_by_default_then_given_up(receiver: Receiver) -> None:
    receiver.script("cb", default=Answer(status=500))
    async with aiohttp.ClientSession() as http:
        sender = CallbackSender(http, retry_delay=0.01)
        delivery = await sender.send_unread(_target(receiver), user="u@x", unread=2)
    assert not delivery.delivered
    assert [a.number for a in delivery.attempts] == [1, 2, 3]
    assert [a.status for a in delivery.attempts] == [500, 500, 500]
    bodies = [r.body for r in receiver.to("cb")]
    assert len(bodies) == 3 and len(set(bodies)) == 1, "a retry re-sends the same request"


async def test_a_retry_after_a_failure_delivers(receiver: Receiver) -> None:
    receiver.script("cb", Answer(status=503))
    async with aiohttp.ClientSession() as http:
        delivery = await CallbackSender(http, attempts=5).send_unread(
            _target(receiver), user="u@x", unread=2
        )
    assert delivery.delivered
    assert [a.status for a in delivery.attempts] == [503, 200]


async def test_a_hung_receiver_times_out_per_attempt(receiver: Receiver) -> None:
    receiver.script("cb", Answer(hang=True), Answer(hang=True))
    async with aiohttp.ClientSession() as http:
        delivery = await CallbackSender(http, timeout=0.3, attempts=2).send_unread(
            _target(receiver), user="u@x", unread=2
        )
    assert not delivery.delivered
    assert [a.error for a in delivery.attempts] == ["timeout", "timeout"]
    assert all(a.seconds >= 0.29 for a in delivery.attempts)


async def test_the_answer_check_setting(receiver: Receiver) -> None:
    receiver.script("cb", Answer(body=b'{"value":true}'), default=Answer(body=b"success"))
    async with aiohttp.ClientSession() as http:
        strict = CallbackSender(http, answer="empty_or_success")
        delivery = await strict.send_unread(_target(receiver), user="u@x", unread=2)
    assert delivery.delivered
    assert [a.body for a in delivery.attempts] == [b'{"value":true}', b"success"]


async def test_a_custom_envelope_and_a_url_with_a_query(receiver: Receiver) -> None:
    template = (
        "<xml><ToUserName><![CDATA[{corpid}]]></ToUserName><Encrypt>{msg_encrypt}</Encrypt></xml>"
    )
    target = CallbackTarget(receiver.url("cb") + "?tenant=x", TOKEN, KEY, CORPID, envelope=template)
    async with aiohttp.ClientSession() as http:
        delivery = await CallbackSender(http).send_unread(target, user="u@x", unread=0)
    [request] = receiver.to("cb")
    assert request.body.startswith(b"<xml><ToUserName><![CDATA[ww1436e0e65a779aee]]>")
    plain = decrypt(target.crypto.key, envelope_ciphertext(request.body), CORPID)
    assert plain.msg == delivery.message
    assert b"<UnReadCount>0</UnReadCount>" in plain.msg


def test_the_target_hides_its_secrets_and_checks_its_key() -> None:
    target = CallbackTarget("http://127.0.0.1:1/cb", TOKEN, KEY, CORPID)
    assert TOKEN not in repr(target) and KEY not in repr(target)
    with pytest.raises(ValueError, match="bad-key"):
        CallbackTarget("http://127.0.0.1:1/cb", TOKEN, KEY[:-1], CORPID)


async def test_the_query_carries_signature_timestamp_and_nonce(receiver: Receiver) -> None:
    seen: list[str] = []

    async def record(session: aiohttp.ClientSession, ctx: object, params: object) -> None:
        seen.append(str(params.url))  # type: ignore[attr-defined]

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(record)
    async with aiohttp.ClientSession(trace_configs=[trace]) as http:
        delivery = await CallbackSender(http, clock=lambda: 1700000000.0).send_unread(
            _target(receiver), user="u@x", unread=1
        )
    query = parse_qs(urlsplit(seen[0]).query)
    assert query["timestamp"] == ["1700000000"] == [delivery.timestamp]
    assert query["nonce"] == [delivery.nonce] and delivery.nonce.isdigit()
    assert query["msg_signature"] == [delivery.msg_signature]
