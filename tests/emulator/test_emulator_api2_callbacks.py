"""The emulator's second-API tenants send their new-mail callbacks: a callback URL saved
through the control API (after the GET handshake) or the seed, ``Mail`` and ``UnRead``
sent from owned tasks, every attempt visible at ``GET /_emulator/api2/callbacks``.

The receiver is a real aiohttp server on loopback that checks and decrypts like a
relay would (relay.core.wecom_crypto), and can be told to answer wrongly or to hang."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from relay.core.callback_xml import MailMessage, UnreadMessage, envelope_ciphertext, parse_message
from relay.core.wecom_crypto import WeComCrypto
from relay.emulator import Api2CallbackSeed, Emulator, EmulatorSeedError, parse_seed
from tests.support import eventually

TOKEN = "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo"
KEY = "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt"
CORPID = "wwdemo0000000001"  # the demo seed's second-API tenant


@dataclass
class Console:
    """A callback receiver: answers the handshake, decrypts and keeps every POST."""

    crypto: WeComCrypto
    url: str = ""
    posts: list[bytes] = field(default_factory=list)
    messages: list[MailMessage | UnreadMessage] = field(default_factory=list)
    echo_wrong: bool = False
    hang: bool = False
    gets: int = 0

    async def get(self, request: web.Request) -> web.Response:
        self.gets += 1
        q = request.query
        plain = self.crypto.verify(q["msg_signature"], q["timestamp"], q["nonce"], q["echostr"])
        body = plain + b"\n" if self.echo_wrong else plain
        return web.Response(body=body, content_type="text/plain")

    async def post(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.posts.append(raw)
        if self.hang:
            await asyncio.sleep(3600)
        q = request.query
        sealed = envelope_ciphertext(raw)
        message = parse_message(
            self.crypto.verify(q["msg_signature"], q["timestamp"], q["nonce"], sealed)
        )
        assert isinstance(message, MailMessage | UnreadMessage)
        self.messages.append(message)
        return web.Response(body=b"")


@pytest.fixture
async def console() -> AsyncIterator[Console]:
    crypto = WeComCrypto.create(token=TOKEN, encoding_aes_key=KEY, corpid=CORPID)
    console = Console(crypto)
    app = web.Application()
    app.router.add_get("/callback/demo2", console.get)
    app.router.add_post("/callback/demo2", console.post)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    console.url = f"http://127.0.0.1:{runner.addresses[0][1]}/callback/demo2"
    yield console
    await runner.cleanup()


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(port=0, hold=1.0) as emu:
        yield emu


async def call(emu: Emulator, path: str, body: Any = None, method: str = "POST") -> Any:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, f"{emu.base_url}/_emulator/api2/{path}", json=body) as resp,
    ):
        return resp.status, await resp.json()


def _config(console: Console, **extra: Any) -> dict[str, Any]:
    return {"corpid": CORPID, "url": console.url, "token": TOKEN, "encoding_aes_key": KEY,
            "agentid": "1000002", **extra}  # fmt: skip


async def test_saving_performs_the_handshake_and_mail_and_unread_are_sent(
    emu: Emulator, console: Console
) -> None:
    status, saved = await call(emu, "callback", _config(console))
    assert status == 200 and saved["saved"] is True, saved
    assert saved["verification"]["ok"] is True and console.gets == 1
    _, mail = await call(emu, "mail", {"to": "lisi@example.org", "title": "Hi 世界"})
    _, read = await call(emu, "read", {"user": "lisi@example.org", "count": 1})
    await eventually(lambda: len(console.messages) == 2, what="two callbacks")
    first, second = console.messages
    assert isinstance(first, MailMessage) and isinstance(second, UnreadMessage), "in order"
    assert (first.mail_id, first.to_user, first.title) == (
        mail["mail_id"], "lisi@example.org", "Hi 世界",
    )  # fmt: skip
    assert first.new_count == mail["count"] and second.unread == read["unread"]
    assert console.posts[0].startswith(b"<xml><CorpID><![CDATA[wwdemo0000000001]]></CorpID>")
    _, seen = await call(emu, "callbacks", method="GET")
    assert seen["pending"] == 0 and seen["errors"] == []
    assert [d["kind"] for d in seen["deliveries"]] == ["Mail", "UnRead"]
    assert all(d["delivered"] and len(d["attempts"]) == 1 for d in seen["deliveries"])
    assert seen["deliveries"][0]["fields"]["MailID"] == mail["mail_id"]
    assert seen["targets"] == [{"corpid": CORPID, **saved["callback"]}]
    text = json.dumps(seen) + json.dumps(saved)
    assert TOKEN not in text and KEY not in text, "the Token and the key are never shown"
    _, later = await call(emu, "callbacks?since=1", method="GET")
    assert [d["seq"] for d in later["deliveries"]] == [2]


async def test_a_failed_handshake_saves_nothing(emu: Emulator, console: Console) -> None:
    console.echo_wrong = True  # a trailing newline: not the exact plaintext
    status, answer = await call(emu, "callback", _config(console))
    assert status == 400 and answer["saved"] is False
    assert answer["verification"]["ok"] is False and "plaintext" in answer["error"]
    wrong_key = _config(console, token="anotherToken1")  # the console refuses the signature
    console.echo_wrong = False
    status, answer = await call(emu, "callback", wrong_key)
    assert status == 400 and answer["verification"]["status"] == 500
    await call(emu, "mail", {"to": "lisi@example.org"})
    assert await emu.callbacks.drain() == 0
    assert console.posts == [] and emu.api2.tenants[CORPID].callback is None
    _, seen = await call(emu, "callbacks", method="GET")
    assert [v["ok"] for v in seen["verifications"]] == [False, False] and seen["targets"] == []


async def test_bad_configurations_are_refused_by_place(emu: Emulator, console: Console) -> None:
    for bad, where in (
        ({"token": "not a token!"}, "callback.token"),
        ({"encoding_aes_key": "short"}, "callback.encoding_aes_key"),
        ({"url": "ftp://x"}, "callback.url"),
        ({"envelope": "<xml/>"}, "callback.envelope"),
        ({"answer": "maybe"}, "callback.answer"),
        ({"attempts": 0}, "callback.attempts"),
        ({"verify": "yes"}, "'verify'"),
    ):
        status, answer = await call(emu, "callback", _config(console, **bad))
        assert status == 400 and where in answer["error"], (bad, answer)
        assert TOKEN not in answer["error"]
    status, _ = await call(emu, "callback", {**_config(console), "corpid": "wwnobody"})
    assert status == 404
    assert console.gets == 0


async def test_lost_answers_make_the_sender_retry_the_same_request(
    emu: Emulator, console: Console
) -> None:
    await call(emu, "callback", _config(console, lose_answers=2, attempts=3))
    await call(emu, "mail", {"to": "amy@example.org"})
    assert await call(emu, "callbacks/wait", {"timeout": 10}) == (200, {"pending": 0})
    assert (await call(emu, "callbacks/wait", {"timeout": 0}))[0] == 400
    [delivery] = (await call(emu, "callbacks", method="GET"))[1]["deliveries"]
    assert delivery["delivered"] is True
    assert [(a["status"], a["error"]) for a in delivery["attempts"]] == [
        (200, "answer_lost"), (200, "answer_lost"), (200, None),
    ]  # fmt: skip
    assert len(console.posts) == 3 and len(set(console.posts)) == 1, "one request, re-sent"


async def test_envelope_and_answer_readings(emu: Emulator, console: Console) -> None:
    await call(emu, "callback", _config(console, envelope="encrypt_only"))
    await call(emu, "mail", {"to": "amy@example.org"})
    await emu.callbacks.drain()
    assert console.posts[-1].startswith(b"<xml><Encrypt><![CDATA[")
    await call(emu, "callback", _config(console, envelope="wecom"))
    await call(emu, "read", {"user": "amy@example.org"})
    await emu.callbacks.drain()
    assert console.posts[-1].startswith(b"<xml><ToUserName><![CDATA[wwdemo0000000001]]>")
    custom = "<xml><A><![CDATA[{corpid}]]></A><Encrypt><![CDATA[{msg_encrypt}]]></Encrypt></xml>"
    await call(emu, "callback", _config(console, envelope=custom, answer="empty_or_success"))
    await call(emu, "mail", {"to": "amy@example.org"})
    await emu.callbacks.drain()
    assert console.posts[-1].startswith(b"<xml><A><![CDATA[wwdemo0000000001]]></A><Encrypt>")
    assert len(console.messages) == 3 and emu.callbacks.snapshot()["deliveries"][-1]["delivered"]


async def test_a_seeded_callback_sends_without_a_handshake(console: Console) -> None:
    seed = {"api2": [{
        "corpid": CORPID, "secrets": {"newmail": "s1"}, "domains": ["seeded.test"],
        "users": [{"userid": "bob@seeded.test"}],
        "callback": {"url": console.url, "token": TOKEN, "encoding_aes_key": KEY,
                     "timeout": 2, "attempts": 1},
    }]}  # fmt: skip
    async with Emulator(port=0, seed=seed) as emu:
        await call(emu, "mail", {"to": "bob@seeded.test"})
        await emu.callbacks.drain()
        assert console.gets == 0 and [m.to_user for m in console.messages] == ["bob@seeded.test"]  # type: ignore[union-attr]
        await call(emu, "callback", {"corpid": CORPID, "url": None})  # removed
        await call(emu, "mail", {"to": "bob@seeded.test"})
        await emu.callbacks.drain()
        assert len(console.posts) == 1
        async with aiohttp.ClientSession() as http:
            await http.post(f"{emu.base_url}/_emulator/reset")
        assert emu.api2.tenants[CORPID].callback is not None, "reset restores the seed's"
        assert emu.callbacks.snapshot()["deliveries"] == []
    with pytest.raises(EmulatorSeedError, match=r"api2\[0\]\.callback\.encoding_aes_key") as info:
        parse_seed({"api2": [{**seed["api2"][0], "callback": {
            "url": console.url, "token": TOKEN, "encoding_aes_key": KEY[:-1]}}]})  # fmt: skip
    assert KEY[:-1] not in str(info.value)


async def test_closing_cancels_callbacks_still_being_sent(console: Console) -> None:
    console.hang = True
    async with Emulator(port=0) as emu:
        await call(emu, "callback", _config(console, timeout=600))
        await call(emu, "mail", {"to": "ben@example.org"})
        await eventually(lambda: len(console.posts) == 1, what="the hung POST")
        assert emu.callbacks.pending == 1
        assert await emu.callbacks.drain(timeout=0.05) == 1
    assert emu.callbacks.pending == 0 and emu.callbacks.errors == []
    assert console.messages == []


async def test_a_failing_send_task_is_seen_not_lost(
    emu: Emulator, console: Console, caplog: pytest.LogCaptureFixture
) -> None:
    # A configuration no route accepts (set directly on the model): the task fails.
    emu.api2.tenants[CORPID].callback = Api2CallbackSeed(console.url, TOKEN, "not-a-key")
    await call(emu, "mail", {"to": "amy@example.org"})
    assert await emu.callbacks.drain() == 0
    [error] = (await call(emu, "callbacks", method="GET"))[1]["errors"]
    assert error.startswith(f"emulator-callback-{CORPID}: ") and "not-a-key" not in error
    assert "emulator callback task failed" in caplog.text
    assert console.posts == []
