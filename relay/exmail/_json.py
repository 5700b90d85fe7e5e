"""A tolerant JSON reader for what the BizMail server (and its documents) actually send.

The standard ``json`` module is strict, and the protocol is not: the documents'
examples carry trailing commas (``{"Ver": "1",}``), typographic quotes around keys
(``“Type”``), raw line breaks inside strings, and the listen long-poll may put several
objects one after another in a single body. This module is a small recursive-descent
reader that accepts all of that, with no I/O and no dependencies:

- :func:`loads` reads exactly one value (trailing whitespace allowed);
- :func:`iter_values` reads a stream of values (concatenated, newline- or comma-separated)
  and *recovers* from garbage: each unreadable stretch comes back as a :class:`Fault`
  and reading resumes at the next ``{`` or ``[``, so good objects around it survive.

Only :class:`JSONSyntaxError` is ever raised by :func:`loads`; :func:`iter_values`
never raises. Nesting is capped (:data:`MAX_DEPTH`) so hostile input cannot exhaust the stack.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MAX_DEPTH",
    "Fault",
    "JSONSyntaxError",
    "decode_body",
    "iter_values",
    "key_form",
    "loads",
    "normalize_keys",
]

MAX_DEPTH = 64
_OPEN_QUOTES = {'"': '"', "“": "”", "”": "”", "„": "”"}
_CLOSE_CURLY = {"”", "“", '"'}
_NUMBER = re.compile(r"-?(?:\d+)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")
_LITERALS = {"true": True, "false": False, "null": None}
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


class JSONSyntaxError(ValueError):
    """The text is not readable even by the tolerant reader; ``pos`` is where it failed."""

    def __init__(self, message: str, pos: int) -> None:
        super().__init__(f"{message} at offset {pos}")
        self.pos = pos


@dataclass(frozen=True, slots=True)
class Fault:
    """An unreadable stretch of a stream: why, and the text it covered."""

    reason: str
    text: str


def decode_body(body: bytes | str) -> str:
    """Bytes to text: UTF-8 (the protocol's encoding), bad bytes replaced, BOM dropped."""
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    return text.removeprefix("\ufeff")


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, message: str) -> JSONSyntaxError:
        return JSONSyntaxError(message, self.pos)

    def skip_ws(self) -> None:
        text, n = self.text, len(self.text)
        while self.pos < n and (text[self.pos].isspace() or text[self.pos] == "\ufeff"):
            self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def value(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise self.fail("nesting too deep")
        self.skip_ws()
        ch = self.peek()
        if ch == "{":
            return self.obj(depth + 1)
        if ch == "[":
            return self.array(depth + 1)
        if ch in _OPEN_QUOTES:
            return self.string()
        if ch == "-" or ch.isdigit():
            return self.number()
        for word, val in _LITERALS.items():
            if self.text.startswith(word, self.pos):
                self.pos += len(word)
                return val
        raise self.fail("unexpected character" if ch else "unexpected end")

    def obj(self, depth: int) -> dict[str, Any]:
        self.pos += 1  # {
        out: dict[str, Any] = {}
        while True:
            self.skip_ws()
            ch = self.peek()
            if ch == "}":
                self.pos += 1
                return out
            if ch == ",":  # trailing or doubled comma
                self.pos += 1
                continue
            if ch not in _OPEN_QUOTES:
                raise self.fail("expected a key" if ch else "unterminated object")
            key = self.string()
            self.skip_ws()
            if self.peek() != ":":
                raise self.fail("expected ':'")
            self.pos += 1
            out[key] = self.value(depth)
            self.skip_ws()
            if self.peek() not in (",", "}"):
                raise self.fail("expected ',' or '}'")

    def array(self, depth: int) -> list[Any]:
        self.pos += 1  # [
        out: list[Any] = []
        while True:
            self.skip_ws()
            ch = self.peek()
            if ch == "]":
                self.pos += 1
                return out
            if ch == ",":
                self.pos += 1
                continue
            if not ch:
                raise self.fail("unterminated array")
            out.append(self.value(depth))
            self.skip_ws()
            if self.peek() not in (",", "]"):
                raise self.fail("expected ',' or ']'")

    def string(self) -> str:
        opener = self.text[self.pos]
        closers = _CLOSE_CURLY if opener != '"' else {'"'}
        self.pos += 1
        text, n = self.text, len(self.text)
        parts: list[str] = []
        while self.pos < n:
            ch = text[self.pos]
            if ch in closers:
                self.pos += 1
                return "".join(parts)
            if ch == "\\":
                self.pos += 1
                esc = text[self.pos] if self.pos < n else ""
                if esc == "u" and _HEX4.fullmatch(text, self.pos + 1, self.pos + 5):
                    code = int(text[self.pos + 1 : self.pos + 5], 16)
                    self.pos += 5
                    low = self.pos + 2
                    # A UTF-16 surrogate pair spelled as two escapes is one character.
                    if (
                        0xD800 <= code < 0xDC00
                        and text.startswith("\\u", self.pos)
                        and _HEX4.fullmatch(text, low, low + 4)
                        and 0xDC00 <= (second := int(text[low : low + 4], 16)) < 0xE000
                    ):
                        code = 0x10000 + ((code - 0xD800) << 10) + (second - 0xDC00)
                        self.pos = low + 4
                    parts.append(chr(code))
                    continue
                parts.append(_ESCAPES.get(esc, esc))  # unknown escape: keep the character
                self.pos += 1
                continue
            parts.append(ch)
            self.pos += 1
        raise self.fail("unterminated string")

    def number(self) -> int | float:
        match = _NUMBER.match(self.text, self.pos)
        if match is None:
            raise self.fail("bad number")
        self.pos = match.end()
        literal = match.group()
        if "." in literal or "e" in literal or "E" in literal:
            return float(literal)
        return int(literal)


def loads(text: str | bytes) -> Any:
    """Read exactly one JSON value, tolerantly; raise :class:`JSONSyntaxError` otherwise."""
    reader = _Reader(decode_body(text))
    value = reader.value(0)
    reader.skip_ws()
    if reader.pos != len(reader.text):
        raise reader.fail("extra data")
    return value


_STRICT = json.JSONDecoder()
_SEPARATORS = frozenset(" \t\r\n,")


def iter_values(text: str | bytes) -> Iterator[Any | Fault]:
    """Yield every value in a stream of JSON values, and a :class:`Fault` per bad stretch.

    Values may be concatenated, newline-separated or comma-separated. Never raises.

    Well-formed values go through the standard library's C decoder (the fast path a
    busy listener needs); from the first value it refuses on, the tolerant reader takes
    over and reads the rest of the body.
    """
    body = decode_body(text)
    n = len(body)
    pos = 0
    while True:
        while pos < n and body[pos] in _SEPARATORS:
            pos += 1
        if pos >= n:
            return
        try:
            value, end = _STRICT.raw_decode(body, pos)
        except (ValueError, RecursionError):
            break
        yield value
        pos = end
    yield from _tolerant_values(body, pos)


def _tolerant_values(body: str, pos: int) -> Iterator[Any | Fault]:
    reader = _Reader(body)
    reader.pos = pos
    n = len(reader.text)
    while True:
        reader.skip_ws()
        while reader.peek() == ",":
            reader.pos += 1
            reader.skip_ws()
        if reader.pos >= n:
            return
        start = reader.pos
        try:
            yield reader.value(0)
        except JSONSyntaxError as exc:
            failed_at = max(start + 1, min(exc.pos, n))
            resume = _resume_at(reader.text, start, failed_at)
            yield Fault(str(exc), reader.text[start:resume])
            reader.pos = resume


_LINE_START = re.compile(r"\n[ \t\r]*[{\[]")


def _resume_at(text: str, start: int, failed_at: int) -> int:
    """Where to resume after the value at ``start`` failed at ``failed_at``.

    A line that opens a new value inside the failed stretch wins (a truncated object
    followed by a complete one, newline-separated); otherwise the next ``{`` or ``[``
    after the failure. Always past ``start``, so reading makes progress.
    """
    line = _LINE_START.search(text, start + 1, failed_at)
    if line is not None:
        return line.end() - 1
    hits = [i for i in (text.find("{", failed_at), text.find("[", failed_at)) if i != -1]
    return min(hits) if hits else len(text)


@functools.lru_cache(maxsize=4096)
def key_form(key: str) -> str:
    """The form keys are matched in: case-folded, without spaces or underscores.

    ``"NewCount "``, ``"newcount"`` and ``"new_count"`` all become ``"newcount"``;
    ``AuthKey``/``authkey``/``auth_key`` all become ``"authkey"``.
    """
    return "".join(ch for ch in key if not ch.isspace() and ch != "_").casefold()


def normalize_keys(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``obj`` keyed by :func:`key_form`; the first spelling of a key wins."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        out.setdefault(key_form(str(key)), value)
    return out
