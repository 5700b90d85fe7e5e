"""Standard Webhooks signing and verifying: pure functions, no I/O, no clock.

Where it sits: :mod:`relay.sinks.webhook` calls :func:`sign_headers` once per attempt
and sends the headers it returns; receivers (and our tests) check them with
:func:`verify`. The scheme (https://www.standardwebhooks.com/):

- ``webhook-id``: the event id, unchanged across retries (the receiver's dedup key);
- ``webhook-timestamp``: unix seconds of *this* attempt;
- ``webhook-signature``: ``v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>``,
  one per secret, separated by spaces, so a secret can be rotated without downtime:
  configure old and new, move the receiver over, then drop the old one.

A secret is ``whsec_<base64 key>``; :func:`decode_secret` turns it into the raw key.
Keys are held as :class:`SigningKey`, whose repr never shows the key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "SECRET_PREFIX",
    "SignatureError",
    "SigningKey",
    "decode_secret",
    "sign",
    "sign_headers",
    "verify",
]

SECRET_PREFIX: Final = "whsec_"  # noqa: S105 -- the scheme's prefix, not a secret
VERSION: Final = "v1"
DEFAULT_TOLERANCE: Final = 300


class SignatureError(ValueError):
    """A secret is malformed, or a signed request does not verify."""


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A decoded HMAC key. The repr is redacted: keys never reach a log line."""

    key: bytes = field(repr=False)

    def __repr__(self) -> str:
        return "SigningKey(***)"


def decode_secret(secret: str) -> SigningKey:
    """``whsec_<base64>`` -> the raw key. Raises :class:`SignatureError` (no secret in it)."""
    if not secret.startswith(SECRET_PREFIX):
        raise SignatureError(f"a webhook secret must start with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("a webhook secret must be base64 after 'whsec_'") from None
    if not key:
        raise SignatureError("a webhook secret must not be empty")
    return SigningKey(key)


def sign(key: SigningKey, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature of ``<msg_id>.<timestamp>.<body>``."""
    content = msg_id.encode() + b"." + str(timestamp).encode() + b"." + body
    digest = hmac.new(key.key, content, hashlib.sha256).digest()
    return f"{VERSION},{base64.b64encode(digest).decode('ascii')}"


def sign_headers(
    keys: Sequence[SigningKey], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers, one signature per key (rotation)."""
    if not keys:
        raise SignatureError("at least one signing key is required")
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(key, msg_id, timestamp, body) for key in keys),
    }


def verify(
    key: SigningKey,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: int,
    tolerance: int = DEFAULT_TOLERANCE,
) -> str:
    """Check a signed request; return its ``webhook-id``. Raises :class:`SignatureError`.

    ``headers`` keys are matched case-insensitively. The timestamp must be within
    ``tolerance`` seconds of ``now`` (replay protection).
    """
    lower = {name.lower(): value for name, value in headers.items()}
    msg_id = lower.get("webhook-id")
    stamp = lower.get("webhook-timestamp")
    signatures = lower.get("webhook-signature")
    if not (msg_id and stamp and signatures):
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise SignatureError("webhook-timestamp is not an integer") from None
    if abs(now - timestamp) > tolerance:
        raise SignatureError("webhook-timestamp is outside the tolerance")
    expected = sign(key, msg_id, timestamp, body).encode()
    for candidate in signatures.split(" "):
        if hmac.compare_digest(expected, candidate.encode()):
            return msg_id
    raise SignatureError("no matching signature")
