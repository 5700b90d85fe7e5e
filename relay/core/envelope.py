"""Signed broker messages: presence and checkpoints are input, not truth.

Where it sits: lease mode exchanges two kinds of message between the replicas of one
deployment over RabbitMQ, presence (who is alive, which shards it holds) and checkpoints
(each tenant's newest committed ``Ver``). Anyone with publish rights on the vhost can
put a message on the same exchanges and queues, so a replica acts on one only when it
carries a valid signature made with the deployment's secret (``[sharding] secret``).
This module is the pure part: it signs a body and checks a signature. No I/O.

The signature travels in one AMQP header, :data:`HEADER`, next to the unchanged body::

    x-relay-auth: v1,<unix milliseconds>,<hex HMAC-SHA256>

and the MAC covers ``b"v1." + kind + b"." + milliseconds + b"." + body``. The ``kind``
(``"presence"``, ``"checkpoint"``) keeps a message of one kind from being replayed as
the other; the timestamp lets a reader refuse an old message replayed later (presence
checks it against ``max_age``; checkpoints need not, because Vers only grow and an old
one changes nothing). The body is signed as raw bytes, so nothing depends on how JSON
is written.

Several secrets may be configured during a rotation: the first signs, any of them
verifies. Roll a new secret out in two steps (add it second everywhere, then first).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["HEADER", "MIN_SECRET_LENGTH", "Refused", "sign", "verify"]

HEADER = "x-relay-auth"
MIN_SECRET_LENGTH = 16
_VERSION = "v1"
_SHAPE = re.compile(r"^v1,(\d{1,15}),([0-9a-f]{64})$")


@dataclass(frozen=True, slots=True)
class Refused:
    """Why a message was not accepted: ``unsigned``, ``malformed``, ``bad signature`` or
    ``stale``. Safe to log and count: it holds no secret and no body."""

    reason: str


def _mac(kind: str, body: bytes, at_ms: int, secret: bytes) -> str:
    signed = f"{_VERSION}.{kind}.{at_ms}.".encode() + body
    return hmac.new(secret, signed, hashlib.sha256).hexdigest()


def sign(kind: str, body: bytes, *, secret: bytes, at_ms: int) -> str:
    """The header value that authenticates ``body`` as a ``kind`` message sent at
    ``at_ms`` (Unix milliseconds)."""
    if not secret:
        raise ValueError("an empty secret signs nothing")
    return f"{_VERSION},{at_ms},{_mac(kind, body, at_ms, secret)}"


def verify(
    kind: str,
    body: bytes,
    header: object,
    *,
    secrets: Sequence[bytes],
    now_ms: int | None = None,
    max_age_ms: int | None = None,
) -> int | Refused:
    """The message's send time (Unix milliseconds) when ``header`` authenticates
    ``body`` as ``kind`` under one of ``secrets``, else why not.

    With ``max_age_ms`` (and ``now_ms``), a message sent longer ago than that, or
    further in the future (clock skew is the caller's margin to include), is ``stale``.
    """
    if header is None:
        return Refused("unsigned")
    if isinstance(header, bytes):
        try:
            header = header.decode("ascii")
        except UnicodeDecodeError:
            return Refused("malformed")
    if not isinstance(header, str):
        return Refused("malformed")
    match = _SHAPE.match(header)
    if match is None:
        return Refused("malformed")
    at_ms = int(match.group(1))
    given = match.group(2)
    if not any(
        hmac.compare_digest(_mac(kind, body, at_ms, secret), given) for secret in secrets if secret
    ):
        return Refused("bad signature")
    if max_age_ms is not None and now_ms is not None and abs(now_ms - at_ms) > max_age_ms:
        return Refused("stale")
    return at_ms
