"""WeCom's message crypto (WXBizMsgCrypt), as the second Exmail API's callback uses it.

Pure code, no I/O (``spec/EXMAIL-API-2-NOTES.md`` §9.4, §9.5):

- **signature**: ``hex(sha1(join(sorted([token, timestamp, nonce, msg_encrypt]))))``,
  the four strings sorted in plain byte order and joined with no separator; checked in
  constant time (:func:`check_signature`);
- **key**: ``AESKey = base64decode(EncodingAESKey + "=")``, 32 bytes (AES-256), decoded
  leniently: the 43rd character may carry non-zero spare bits (WeCom's own sample key
  does), which strict decoders refuse (:func:`decode_key`);
- **cipher**: AES-256-CBC, IV = AESKey[:16], no padding inside the cipher; the plaintext
  is ``random(16) ‖ uint32 big-endian len(msg) ‖ msg ‖ ReceiveId`` PKCS#7-padded to a
  multiple of **32** bytes; the wire form is standard base64 with padding.

:func:`decrypt` checks the ReceiveId against the CorpID (WeCom's -40005) and refuses a
malformed buffer; :func:`encrypt` is the sender's side (the emulator, tests), with the
random prefix given by the caller (random for a real sender, fixed for the notes'
vector B).

Every failure is a :class:`CryptoError` whose ``reason`` is a short stable word (a
metric label, a log field) and whose message never holds the token, the key, the
ciphertext or the plaintext.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import struct
from dataclasses import dataclass
from typing import Final, Literal

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = [
    "BLOCK",
    "CryptoError",
    "Decrypted",
    "Reason",
    "WeComCrypto",
    "check_signature",
    "decode_key",
    "decrypt",
    "encrypt",
    "signature",
    "valid_encoding_aes_key",
    "valid_token",
]

BLOCK: Final = 32  # WeCom's PKCS#7 block: 32 bytes, not AES's 16
PREFIX: Final = 16  # the random prefix
_KEY_RE: Final = re.compile(r"^[A-Za-z0-9]{43}$")
_TOKEN_RE: Final = re.compile(r"^[A-Za-z0-9]{1,32}$")

Reason = Literal[
    "bad-signature",  # WeCom -40001
    "bad-key",  # -40004
    "wrong-corpid",  # -40005
    "bad-ciphertext",  # -40007 (AES) / -40010 (base64)
    "bad-buffer",  # -40008: the plaintext's layout is wrong
]


class CryptoError(ValueError):
    """A callback that does not verify or decrypt. ``reason`` is one :data:`Reason`."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: Reason = reason
        self.detail = detail


def valid_token(token: str) -> bool:
    """WeCom's rule for the callback Token: 1..32 letters and digits."""
    return _TOKEN_RE.fullmatch(token) is not None


def valid_encoding_aes_key(key: str) -> bool:
    """WeCom's rule for the EncodingAESKey: exactly 43 characters of ``[A-Za-z0-9]``."""
    return _KEY_RE.fullmatch(key) is not None


def decode_key(encoding_aes_key: str) -> bytes:
    """The 32-byte AES key of a 43-character EncodingAESKey, decoded leniently (spare
    bits of the last character ignored, as Java's and Python's decoders do)."""
    if not valid_encoding_aes_key(encoding_aes_key):
        raise CryptoError("bad-key", "an EncodingAESKey is 43 characters of [A-Za-z0-9]")
    key = base64.b64decode(encoding_aes_key + "=")
    if len(key) != 32:  # pragma: no cover - 43 base64 characters are always 32 bytes
        raise CryptoError("bad-key", "the EncodingAESKey does not decode to 32 bytes")
    return key


def signature(token: str, timestamp: str, nonce: str, msg_encrypt: str) -> str:
    """``msg_signature``: lowercase hex SHA-1 of the four strings sorted and joined."""
    parts = sorted(s.encode("utf-8") for s in (token, timestamp, nonce, msg_encrypt))
    return hashlib.sha1(b"".join(parts), usedforsecurity=False).hexdigest()


def check_signature(
    token: str, timestamp: str, nonce: str, msg_encrypt: str, msg_signature: str
) -> None:
    """Raise :class:`CryptoError` ``bad-signature`` unless ``msg_signature`` matches
    (compared in constant time; upper-case hex is accepted)."""
    expected = signature(token, timestamp, nonce, msg_encrypt).encode("ascii")
    given = msg_signature.strip().lower().encode("utf-8", "replace")
    if not hmac.compare_digest(expected, given):
        raise CryptoError("bad-signature", "msg_signature does not match")


def _cipher(key: bytes) -> Cipher[modes.CBC]:
    return Cipher(algorithms.AES(key), modes.CBC(key[:16]))


def pad(data: bytes) -> bytes:
    """PKCS#7 to a multiple of 32 bytes (a whole block of 32 when already aligned)."""
    amount = BLOCK - len(data) % BLOCK
    return data + bytes([amount]) * amount


def encrypt(key: bytes, msg: bytes, receive_id: str, *, random_prefix: bytes) -> str:
    """``msg_encrypt`` for ``msg`` addressed to ``receive_id`` (the CorpID).
    ``random_prefix``: 16 bytes, random for a real sender (the caller draws them: the
    core has no effects), fixed for a reproducible vector."""
    prefix = random_prefix
    if len(prefix) != PREFIX:
        raise ValueError(f"the random prefix is {PREFIX} bytes")
    plain = prefix + struct.pack(">I", len(msg)) + msg + receive_id.encode("utf-8")
    encryptor = _cipher(key).encryptor()
    sealed = encryptor.update(pad(plain)) + encryptor.finalize()
    return base64.b64encode(sealed).decode("ascii")


@dataclass(frozen=True, slots=True)
class Decrypted:
    """A decrypted buffer: the message and what framed it."""

    msg: bytes
    receive_id: str
    random_prefix: bytes
    padding: int


def decrypt(key: bytes, msg_encrypt: str, corpid: str | None) -> Decrypted:
    """Decrypt ``msg_encrypt``; check the ReceiveId equals ``corpid`` (None: no check).

    Padding as WeCom's samples read it: the last byte ``p``, taken as 0 when outside
    1..32. The length field must fit inside the buffer.
    """
    text = msg_encrypt.strip().replace(" ", "+")  # a '+' sent unescaped in a query
    try:
        sealed = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise CryptoError("bad-ciphertext", "not base64") from None
    if not sealed or len(sealed) % 16 != 0:
        raise CryptoError("bad-ciphertext", "not a whole number of AES blocks")
    decryptor = _cipher(key).decryptor()
    plain = decryptor.update(sealed) + decryptor.finalize()
    amount = plain[-1]
    if not 1 <= amount <= BLOCK:
        amount = 0
    body = plain[: len(plain) - amount]
    if len(body) < PREFIX + 4:
        raise CryptoError("bad-buffer", "shorter than its prefix and length")
    (length,) = struct.unpack(">I", body[PREFIX : PREFIX + 4])
    end = PREFIX + 4 + length
    if end > len(body):
        raise CryptoError("bad-buffer", "the message length runs past the buffer")
    try:
        receive_id = body[end:].decode("utf-8")
    except UnicodeDecodeError:
        raise CryptoError("bad-buffer", "the ReceiveId is not UTF-8") from None
    if corpid is not None and not hmac.compare_digest(
        receive_id.encode("utf-8"), corpid.encode("utf-8")
    ):
        raise CryptoError("wrong-corpid", "the ReceiveId is not this tenant's CorpID")
    return Decrypted(
        msg=body[PREFIX + 4 : end],
        receive_id=receive_id,
        random_prefix=body[:PREFIX],
        padding=amount,
    )


@dataclass(frozen=True, slots=True)
class WeComCrypto:
    """One callback configuration: Token, AES key, CorpID. Its repr shows the CorpID only."""

    token: str
    key: bytes
    corpid: str

    @classmethod
    def create(cls, *, token: str, encoding_aes_key: str, corpid: str) -> WeComCrypto:
        return cls(token=token, key=decode_key(encoding_aes_key), corpid=corpid)

    def __repr__(self) -> str:
        return f"WeComCrypto(corpid={self.corpid!r})"

    def verify(self, msg_signature: str, timestamp: str, nonce: str, msg_encrypt: str) -> bytes:
        """Check the signature, then decrypt and check the CorpID: the message's bytes."""
        check_signature(self.token, timestamp, nonce, msg_encrypt, msg_signature)
        return decrypt(self.key, msg_encrypt, self.corpid).msg

    def seal(
        self, msg: bytes, timestamp: str, nonce: str, *, random_prefix: bytes
    ) -> tuple[str, str]:
        """``(msg_encrypt, msg_signature)`` for ``msg``: the sender's side."""
        sealed = encrypt(self.key, msg, self.corpid, random_prefix=random_prefix)
        return sealed, signature(self.token, timestamp, nonce, sealed)
