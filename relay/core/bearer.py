"""Bearer tokens that rotate: several valid at once, the first one the one this replica sends.

Where it sits: the pure core of ``[http] auth_token_file`` and ``admin_token_file``.
:mod:`relay.app.http_settings` parses the file at start, :mod:`relay.ops.token_file`
again whenever it changes; :mod:`relay.ops.auth` and :mod:`relay.ops.admin` match what a
caller offers. No I/O: the caller reads the file.

The file holds one token per line::

    # blank lines and lines starting with '#' are ignored
    ops-2026   k8Hq0x...     NAME TOKEN: a named token (audit lines show the name)
    3q2+7wZ...               TOKEN: an unnamed one (audit lines show its fingerprint)

Why a space, and not ``name: token``: a bearer token never holds whitespace (RFC 6750's
``b64token`` is letters, digits and ``-._~+/=``), but a token made by hand may well hold
a ``:``. So a line with a space inside is always a name and a token, and a line without
is always one whole token, whatever characters it has. Every listed token is accepted;
the *first* is the one this replica sends to its peers, which makes a rotation three
rollouts: add the new token below the old, move it to the top, remove the old one
(docs/operations.md, "Rotating the ops and admin tokens").

Why digests: :meth:`TokenSet.match` compares the SHA-256 of the offered token with each
candidate's (equal lengths, so :func:`hmac.compare_digest` takes the same time for a
short guess as for a long one) and always goes through the whole list: the time taken
tells how many tokens there are, not which one matched, nor how much of one.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "MIN_TOKEN_LENGTH",
    "BearerToken",
    "TokenFileError",
    "TokenSet",
    "TokenSource",
    "header_bytes",
    "parse_token_file",
]

MIN_TOKEN_LENGTH = 16
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_FINGERPRINT_LIKE = re.compile(r"[0-9a-f]{12}")


def header_bytes(text: str) -> bytes:
    """The bytes a header value came as. aiohttp reads a header's bytes that are not
    UTF-8 as lone surrogates (``surrogateescape``), which a plain ``encode()`` refuses:
    a hostile ``Authorization: Bearer \\xff`` would be a 500 instead of a refusal."""
    return text.encode("utf-8", "surrogateescape")


class TokenFileError(ValueError):
    """A token file that cannot be used; the message names the line, never its content."""


@dataclass(frozen=True, slots=True)
class BearerToken:
    """One accepted token and its optional name (safe to log: the name, never the value)."""

    value: str = field(repr=False)
    name: str | None = None
    digest: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest", hashlib.sha256(self.value.encode()).digest())

    def __repr__(self) -> str:
        return f"BearerToken(name={self.name!r})"


@dataclass(frozen=True, slots=True)
class TokenSet:
    """Every token a key accepts, in the file's order (``first`` is the one sent)."""

    tokens: tuple[BearerToken, ...]

    def __post_init__(self) -> None:
        if not self.tokens:
            raise ValueError("a token set holds at least one token")

    @classmethod
    def of(cls, value: str) -> TokenSet:
        """One unnamed token (an inline ``admin_token``/``auth_token``)."""
        return cls((BearerToken(value),))

    @property
    def first(self) -> BearerToken:
        return self.tokens[0]

    def current(self) -> TokenSet:
        """A fixed set is its own :class:`TokenSource`."""
        return self

    def values(self) -> tuple[str, ...]:
        return tuple(token.value for token in self.tokens)

    def match(self, offered: str) -> BearerToken | None:
        """The token ``offered`` is, compared with every candidate in constant time."""
        digest = hashlib.sha256(header_bytes(offered)).digest()
        found: BearerToken | None = None
        for token in self.tokens:  # no early exit: every candidate is compared
            if hmac.compare_digest(digest, token.digest) and found is None:
                found = token
        return found

    def describe(self) -> str:
        """``3 tokens (ops-2026, ci, 1 unnamed)``: for a log line, no value in it."""
        names = [t.name for t in self.tokens if t.name is not None]
        unnamed = len(self.tokens) - len(names)
        parts = [*names, *([f"{unnamed} unnamed"] if unnamed else [])]
        count = len(self.tokens)
        return f"{count} token{'s' if count != 1 else ''} ({', '.join(parts)})"

    def __repr__(self) -> str:
        return f"TokenSet({self.describe()})"


class TokenSource(Protocol):
    """Where the accepted tokens come from: a fixed :class:`TokenSet`, or a file that is
    re-read when it changes (:class:`relay.ops.token_file.LiveTokens`)."""

    def current(self) -> TokenSet: ...


def _line(number: int, fields: list[str], names: set[str]) -> BearerToken:
    if len(fields) > 2:
        raise TokenFileError(
            f"line {number}: expected TOKEN or NAME TOKEN, found {len(fields)} words"
        )
    name = fields[0] if len(fields) == 2 else None
    if name is not None:
        if not _NAME.fullmatch(name):
            raise TokenFileError(
                f"line {number}: a token's name is 1 to 63 letters, digits, '_', '.' or '-'"
                " starting with a letter or digit (the line is NAME TOKEN)"
            )
        if _FINGERPRINT_LIKE.fullmatch(name):
            raise TokenFileError(
                f"line {number}: a token's name cannot be 12 hex digits (audit lines"
                " would read it as a fingerprint)"
            )
        if name in names:
            raise TokenFileError(f"line {number}: the name {name!r} is used twice")
        names.add(name)
    return BearerToken(fields[-1], name)


def parse_token_file(text: str, *, lone_min_length: int = MIN_TOKEN_LENGTH) -> TokenSet:
    """The tokens of a token file (format above). Each needs :data:`MIN_TOKEN_LENGTH`
    characters, except that a file holding one unnamed token, the format from before
    rotation, needs only ``lone_min_length`` (``auth_token`` never had a minimum, and an
    existing file keeps working). :class:`TokenFileError` names the line, never a value."""
    found: list[tuple[int, BearerToken]] = []
    names: set[str] = set()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line and not line.startswith("#"):
            found.append((number, _line(number, line.split(), names)))
    if not found:
        raise TokenFileError("holds no token (only blank lines and '#' comments)")
    lone = len(found) == 1 and found[0][1].name is None
    minimum = lone_min_length if lone else MIN_TOKEN_LENGTH
    seen: dict[str, int] = {}
    for number, token in found:
        if len(token.value) < minimum:
            raise TokenFileError(f"line {number}: a token must be at least {minimum} characters")
        if token.value in seen:
            raise TokenFileError(f"line {number}: the same token as line {seen[token.value]}")
        seen[token.value] = number
    return TokenSet(tuple(token for _, token in found))
