"""The second Exmail API's new-mail callback, decided: pure code, no I/O.

The receiver's shell (:mod:`relay.gateway.callback`) reads the request whole and hands
its query parameters and body here; what comes back is the plaintext to echo (GET), the
events to journal (POST), or a :class:`Refused` saying which 4xx and why
(``spec/EXMAIL-API-2-NOTES.md`` §9):

1. GET (URL verification): ``msg_signature``, ``timestamp``, ``nonce``, ``echostr``; the
   signature over the ``echostr``, then its decryption with the CorpID check; the answer
   is exactly the plaintext (:func:`verify_url`).
2. POST (an event): the ``Encrypt`` of the XML envelope, the signature over it, the
   decryption with the CorpID check, the message by ``MsgType`` (:func:`open_post`), and
   its events (:func:`events_of`).
3. Both: the ``timestamp`` must be within ``max_age`` seconds of the relay's clock
   (0: unchecked), checked after the signature, so ``stale`` counts only requests the
   tenant's Token signed: a replay, or a sender whose clock is off.

Ids (docs/events.md, "Ids"): a ``Mail`` is ``exmail.mail.new`` with the id of a
``listen`` reminder (tenant, account, MailID); an ``UnRead`` is ``exmail.mail.unread``
with an id from tenant, account, count and ``Time``. The same callback delivered twice
(a retry, another replica) yields the same ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Literal

from relay.core.callback_xml import (
    MailMessage,
    Message,
    MessageError,
    OtherMessage,
    UnreadMessage,
    envelope_ciphertext,
    parse_message,
)
from relay.core.events import Event, callback_unread, mail_new
from relay.core.wecom_crypto import CryptoError, WeComCrypto

__all__ = ["RefusalReason", "Refused", "events_of", "open_post", "verify_url"]

RefusalReason = Literal[
    "missing-parameter",
    "malformed-body",
    "bad-signature",
    "bad-ciphertext",
    "bad-buffer",
    "wrong-corpid",
    "stale",
    "bad-key",
]

_STATUS: dict[str, int] = {
    "missing-parameter": 400,
    "malformed-body": 400,
    "bad-ciphertext": 400,
    "bad-buffer": 400,
    "bad-key": 400,
    "bad-signature": 403,
    "wrong-corpid": 403,
    "stale": 403,
}


class Refused(Exception):
    """A callback request the relay refuses: ``status`` (4xx), ``reason`` (a metric
    label), and a detail that names no secret and no content."""

    def __init__(self, reason: RefusalReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: RefusalReason = reason
        self.status = _STATUS[reason]
        self.detail = detail


def _param(query: Mapping[str, str], name: str) -> str:
    value = query.get(name)
    if value is None or not value.strip():
        raise Refused("missing-parameter", f"the query has no {name}")
    return value.strip()


def _fresh(timestamp: str, now: float, max_age: float) -> None:
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise Refused("missing-parameter", "timestamp is not unix seconds")
    if max_age > 0 and abs(now - int(timestamp)) > max_age:
        age = int(now) - int(timestamp)
        detail = f"timestamp is {age:+d} s off the relay's clock (max_age {max_age:g} s)"
        raise Refused("stale", detail)


def _open(crypto: WeComCrypto, signature: str, timestamp: str, nonce: str, sealed: str) -> bytes:
    try:
        return crypto.verify(signature, timestamp, nonce, sealed)
    except CryptoError as exc:
        raise Refused(exc.reason, exc.detail) from None


def verify_url(
    crypto: WeComCrypto, query: Mapping[str, str], *, now: float, max_age: float
) -> bytes:
    """The GET handshake: the decrypted ``echostr`` to answer, byte for byte."""
    signature = _param(query, "msg_signature")
    timestamp = _param(query, "timestamp")
    nonce = _param(query, "nonce")
    # A '+' of the base64 that arrived unescaped reads as a space: turn it back (§9.2).
    echostr = _param(query, "echostr").replace(" ", "+")
    plain = _open(crypto, signature, timestamp, nonce, echostr)
    _fresh(timestamp, now, max_age)
    return plain


def open_post(
    crypto: WeComCrypto, query: Mapping[str, str], body: bytes, *, now: float, max_age: float
) -> Message:
    """A POST: the envelope's ``Encrypt``, checked and decrypted, parsed as a message."""
    signature = _param(query, "msg_signature")
    timestamp = _param(query, "timestamp")
    nonce = _param(query, "nonce")
    try:
        sealed = envelope_ciphertext(body)
    except MessageError as exc:
        raise Refused("malformed-body", f"envelope: {exc}") from None
    plain = _open(crypto, signature, timestamp, nonce, sealed)
    _fresh(timestamp, now, max_age)
    try:
        message = parse_message(plain)
    except MessageError as exc:
        raise Refused("malformed-body", f"message: {exc}") from None
    if message.corpid and message.corpid != crypto.corpid:
        raise Refused("wrong-corpid", "the message's CorpID is not this tenant's")
    return message


def events_of(tenant: str, message: Message, *, now: datetime) -> list[Event]:
    """The events a message makes: one for ``Mail`` and ``UnRead``, none otherwise."""
    if isinstance(message, MailMessage):
        return [
            mail_new(
                tenant=tenant,
                user=message.to_user,
                mail_id=message.mail_id,
                sender=message.from_user,
                receiver=message.to_user,
                subject=message.title,
                summary="",
                unread=message.new_count,
                now=now,
            )
        ]
    if isinstance(message, UnreadMessage):
        return [
            callback_unread(
                tenant=tenant, user=message.user, unread=message.unread, at=message.time, now=now
            )
        ]
    assert isinstance(message, OtherMessage)
    return []
