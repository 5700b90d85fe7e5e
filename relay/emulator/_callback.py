"""The second Exmail API's callback sender: what Exmail does to a tenant's callback URL.

For the emulator and tests (``spec/EXMAIL-API-2-NOTES.md`` §9.9, "Emulator"): it signs
and encrypts exactly as §9.4 and §9.5 (:mod:`relay.core.wecom_crypto`), wraps the
ciphertext in a configurable envelope (:data:`relay.core.callback_xml.DEFAULT_ENVELOPE`
by default: CorpID, AgentID, Encrypt), and POSTs it with a timeout and a number of
attempts (5 s and 3 by default, WeCom's values), recording each attempt. The "save
settings" action (:meth:`CallbackSender.verify_url`) sends the GET handshake and
requires the exact plaintext back.

The uncertain parts of the protocol are settings (§11 q1, q2): the envelope
(:attr:`CallbackTarget.envelope`), and which answer stops the retries
(:attr:`CallbackSender.answer`: ``"status"``, any 200, the default; ``"empty_or_success"``,
a 200 whose body is empty or ``success``). Tests may fix the random prefix, the
timestamp and the nonce, so the notes' vector B is reproducible. A retry re-sends the
same request (same timestamp, nonce and signature), as a sender that re-tries a request
does; the receiver sees a repeat. ``lose_answers`` (a fault, 0 by default) discards the
first N answers of each delivery after reading them, recorded as ``answer_lost``: the
receiver did its work and answered, the sender retries, as when a connection drops or
the sender's timeout fires just before the answer.

Standalone: nothing here knows the emulator's tenant model; the emulator's ``on_mail``
/ ``on_unread`` seam calls :meth:`CallbackSender.send_mail` / :meth:`send_unread`.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal
from urllib.parse import urlencode

import aiohttp

from relay.core.callback_xml import DEFAULT_ENVELOPE, envelope_xml, mail_xml, unread_xml
from relay.core.wecom_crypto import WeComCrypto, decode_key

__all__ = [
    "AnswerCheck",
    "Attempt",
    "CallbackSender",
    "CallbackTarget",
    "Delivery",
    "Verification",
    "sealed_post",
]

AnswerCheck = Literal["status", "empty_or_success"]


@dataclass(frozen=True, slots=True)
class CallbackTarget:
    """Where and how one tenant's callbacks go. The repr shows the URL and CorpID only."""

    url: str
    token: str
    encoding_aes_key: str
    corpid: str
    agentid: str = ""
    envelope: str = DEFAULT_ENVELOPE

    def __post_init__(self) -> None:
        decode_key(self.encoding_aes_key)  # CryptoError now, not at the first send

    def __repr__(self) -> str:
        return f"CallbackTarget(url={self.url!r}, corpid={self.corpid!r})"

    @property
    def crypto(self) -> WeComCrypto:
        return WeComCrypto.create(
            token=self.token, encoding_aes_key=self.encoding_aes_key, corpid=self.corpid
        )


@dataclass(frozen=True, slots=True)
class Attempt:
    """One HTTP attempt: its number (1-based), its answer or its failure."""

    number: int
    started_at: float
    seconds: float
    status: int | None = None
    body: bytes = b""
    error: str | None = None  # "timeout", "answer_lost", or the exception's class name

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None


@dataclass(frozen=True, slots=True)
class Delivery:
    """One callback (a message, all its attempts): ``delivered`` once an answer passed."""

    kind: str  # "Mail", "UnRead", or the raw message's MsgType as the caller named it
    message: bytes
    timestamp: str
    nonce: str
    msg_signature: str
    attempts: tuple[Attempt, ...]
    delivered: bool


@dataclass(frozen=True, slots=True)
class Verification:
    """The GET handshake: ``ok`` when the answer was 200 with exactly ``expected``."""

    expected: bytes
    status: int | None
    body: bytes
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.body == self.expected


def sealed_post(
    target: CallbackTarget, message: bytes, *, timestamp: str, nonce: str, random_prefix: bytes
) -> tuple[str, bytes, str]:
    """``(url, body, msg_signature)`` of the POST that carries ``message`` to ``target``:
    encrypted and signed (§9.4, §9.5), in the target's envelope. Pure; the sender and
    the callback load generator of the benchmarks (bench/callback_load.py) both use it."""
    sealed, signature = target.crypto.seal(message, timestamp, nonce, random_prefix=random_prefix)
    body = envelope_xml(
        sealed, corpid=target.corpid, agentid=target.agentid, template=target.envelope
    )
    query = urlencode({"msg_signature": signature, "timestamp": timestamp, "nonce": nonce})
    return f"{target.url}{'&' if '?' in target.url else '?'}{query}", body, signature


def _nonce() -> str:
    return str(secrets.randbelow(9_000_000_000) + 1_000_000_000)


@dataclass(slots=True)
class CallbackSender:
    """Signs, encrypts and POSTs callbacks; every delivery is kept in :attr:`history`."""

    session: aiohttp.ClientSession
    timeout: float = 5.0
    attempts: int = 3
    retry_delay: float = 0.0  # unknown for Exmail (§9.7); tests keep it short
    answer: AnswerCheck = "status"
    clock: Callable[[], float] = time.time
    random_prefix: Callable[[], bytes] = field(default=lambda: os.urandom(16))
    nonce: Callable[[], str] = _nonce
    lose_answers: int = 0  # a fault: see below
    history: list[Delivery] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")

    def _passes(self, status: int, body: bytes) -> bool:
        if status != 200:
            return False
        return self.answer == "status" or body.strip() in (b"", b"success")

    async def send(
        self,
        target: CallbackTarget,
        message: bytes,
        *,
        kind: str = "raw",
        timestamp: str | None = None,
        nonce: str | None = None,
        random_prefix: bytes | None = None,
    ) -> Delivery:
        """POST ``message`` (the plaintext XML) to ``target``, up to :attr:`attempts` times."""
        stamp = timestamp if timestamp is not None else str(int(self.clock()))
        once = nonce if nonce is not None else self.nonce()
        prefix = random_prefix if random_prefix is not None else self.random_prefix()
        url, body, signature = sealed_post(
            target, message, timestamp=stamp, nonce=once, random_prefix=prefix
        )
        attempts: list[Attempt] = []
        delivered = False
        for number in range(1, self.attempts + 1):
            if number > 1 and self.retry_delay > 0:
                await asyncio.sleep(self.retry_delay)
            attempt = await self._post(url, body, number)
            if number <= self.lose_answers and attempt.error is None:
                # The receiver answered, but the answer "never arrived": retry.
                attempt = replace(attempt, error="answer_lost")
            attempts.append(attempt)
            passed = attempt.status is not None and self._passes(attempt.status, attempt.body)
            if attempt.error is None and passed:
                delivered = True
                break
        delivery = Delivery(
            kind=kind,
            message=message,
            timestamp=stamp,
            nonce=once,
            msg_signature=signature,
            attempts=tuple(attempts),
            delivered=delivered,
        )
        self.history.append(delivery)
        return delivery

    async def _post(self, url: str, body: bytes, number: int) -> Attempt:
        started_at = self.clock()
        started = time.monotonic()
        try:
            async with self.session.post(
                url,
                data=body,
                headers={"Content-Type": "text/xml; charset=utf-8"},
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                allow_redirects=False,
            ) as answer:
                payload = await answer.read()
                return Attempt(
                    number, started_at, time.monotonic() - started, answer.status, payload
                )
        except TimeoutError:
            return Attempt(number, started_at, time.monotonic() - started, error="timeout")
        except aiohttp.ClientError as exc:
            return Attempt(number, started_at, time.monotonic() - started, error=type(exc).__name__)

    async def send_mail(
        self,
        target: CallbackTarget,
        *,
        mail_id: str,
        to_user: str,
        from_user: str,
        title: str,
        time: int | None = None,
        new_count: int = 1,
        timestamp: str | None = None,
        nonce: str | None = None,
        random_prefix: bytes | None = None,
    ) -> Delivery:
        """A ``Mail`` message (§9.6) for one recipient."""
        message = mail_xml(
            corpid=target.corpid,
            mail_id=mail_id,
            to_user=to_user,
            from_user=from_user,
            title=title,
            time=int(self.clock()) if time is None else time,
            new_count=new_count,
        )
        return await self.send(
            target, message, kind="Mail", timestamp=timestamp, nonce=nonce,
            random_prefix=random_prefix,
        )  # fmt: skip

    async def send_unread(
        self,
        target: CallbackTarget,
        *,
        user: str,
        unread: int,
        time: int | None = None,
        timestamp: str | None = None,
        nonce: str | None = None,
        random_prefix: bytes | None = None,
    ) -> Delivery:
        """An ``UnRead`` message (§9.6): ``user``'s unread count is now ``unread``."""
        message = unread_xml(
            corpid=target.corpid,
            user=user,
            time=int(self.clock()) if time is None else time,
            unread=unread,
        )
        return await self.send(
            target, message, kind="UnRead", timestamp=timestamp, nonce=nonce,
            random_prefix=random_prefix,
        )  # fmt: skip

    async def verify_url(
        self,
        target: CallbackTarget,
        *,
        echo: str | None = None,
        timestamp: str | None = None,
        nonce: str | None = None,
        random_prefix: bytes | None = None,
    ) -> Verification:
        """The "save settings" GET: ``ok`` only with 200 and exactly the plaintext back."""
        plain = (echo if echo is not None else str(secrets.randbits(63))).encode()
        stamp = timestamp if timestamp is not None else str(int(self.clock()))
        once = nonce if nonce is not None else self.nonce()
        prefix = random_prefix if random_prefix is not None else self.random_prefix()
        sealed, signature = target.crypto.seal(plain, stamp, once, random_prefix=prefix)
        query = urlencode(
            {"msg_signature": signature, "timestamp": stamp, "nonce": once, "echostr": sealed}
        )
        url = f"{target.url}{'&' if '?' in target.url else '?'}{query}"
        try:
            async with self.session.get(
                url, timeout=aiohttp.ClientTimeout(total=self.timeout), allow_redirects=False
            ) as answer:
                return Verification(plain, answer.status, await answer.read())
        except TimeoutError:
            return Verification(plain, None, b"", error="timeout")
        except aiohttp.ClientError as exc:
            return Verification(plain, None, b"", error=type(exc).__name__)
