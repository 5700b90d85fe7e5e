"""Cutting over-long JSON strings while a body streams in: bounded memory, no answer lost.

Why: one ``listen`` answer carries every mail Exmail hands out at that moment, and the
server forgets what it handed out. Dropping a whole answer because one mail's summary
is 5 MB would lose that mail *and its neighbours*. So instead of refusing the answer at
``max_response_bytes``, the listen body goes through a :class:`StringCutter` as it
arrives: every JSON string literal longer than ``max_field_bytes`` is cut to that many
bytes (never inside a UTF-8 character or an escape sequence) and :data:`CUT_MARK` is put
where the rest was. What is kept is bounded by (number of strings x the field cap) plus
the structure, so memory stays bounded whatever the server sends; the caller still caps
that total. The parser (:mod:`relay.exmail._listen`) sees the mark, removes it and
names the field in the message's ``truncated``; the event says so in ``data.truncated``.

The cutter knows JSON strings only: ``"`` opens and closes one, ``\\`` escapes the next
character (``\\uXXXX`` six bytes). That is all the tolerant reader (:mod:`._json`)
needs to find the same strings again. A string that never closes is cut at the cap
and the rest of the body is dropped with it (the reader reports it as malformed).

The mark is U+E000, the first code point of Unicode's private use area, which no mail
field carries; an input that carries it anyway would be reported as cut. Pure: the
caller feeds bytes and collects bytes, no I/O.
"""

from __future__ import annotations

import re

__all__ = ["CUT_MARK", "CUT_MARK_BYTES", "StringCutter"]

CUT_MARK = "\ue000"
CUT_MARK_BYTES = CUT_MARK.encode("utf-8")
_SPECIAL = re.compile(rb'["\\]')


def _utf8_safe(data: bytes) -> bytes:
    """``data`` less a UTF-8 character cut at its end (if any)."""
    end = len(data)
    # Walk back over at most three continuation bytes to the character's lead byte.
    start = end - 1
    while start >= 0 and end - start <= 4 and (data[start] & 0xC0) == 0x80:
        start -= 1
    if start < 0:
        return data
    lead = data[start]
    need = 1 if lead < 0x80 else 2 if lead >> 5 == 0b110 else 3 if lead >> 4 == 0b1110 else 4
    if lead >= 0x80 and (lead & 0xC0) == 0x80:
        return data  # not UTF-8 at all here: nothing better to do than a byte cut
    return data if end - start >= need else data[:start]


def _escape_size(data: bytes, at: int) -> int:
    """The length of the escape starting at ``data[at]`` (a backslash), kept whole: two
    bytes, six for ``\\uXXXX``, twelve for a surrogate pair; 0 when more bytes are needed
    to tell."""
    end = len(data)
    if at + 2 > end:
        return 0
    if data[at + 1] != 0x75:  # not "u"
        return 2
    if at + 6 > end:
        return 0
    if data[at + 2 : at + 4].lower() not in _HIGH_SURROGATES:
        return 6
    if at + 8 > end:
        return 0
    return 12 if data[at + 6 : at + 8] == b"\\u" else 6


_HIGH_SURROGATES = frozenset({b"d8", b"d9", b"da", b"db"})


class StringCutter:
    """Feed body chunks with :meth:`feed`, then :meth:`close`; read :attr:`output`.

    ``cut`` counts the strings that were cut so far.
    """

    def __init__(self, max_field_bytes: int) -> None:
        if max_field_bytes < 16:
            raise ValueError("max_field_bytes must be at least 16")
        self.max_field_bytes = max_field_bytes
        self.output = bytearray()
        self.cut = 0
        self._in_string = False
        self._kept = 0  # bytes of the current string kept so far
        self._cutting = False  # the current string is past the cap: drop until it closes
        self._carry = b""  # an escape sequence split between two chunks

    def feed(self, chunk: bytes) -> None:
        data = self._carry + chunk if self._carry else chunk
        self._carry = b""
        pos = 0
        end = len(data)
        out = self.output
        while pos < end:
            if not self._in_string:
                quote = data.find(b'"', pos)
                if quote < 0:
                    out += data[pos:] if pos else data
                    return
                out += data[pos : quote + 1]
                pos = quote + 1
                self._in_string, self._kept, self._cutting = True, 0, False
                continue
            match = _SPECIAL.search(data, pos)
            if match is None:
                # A character split between this chunk and the next waits for the
                # rest, so a cut never lands inside it.
                tail = data[pos:]
                whole = _utf8_safe(tail)
                self._carry = tail[len(whole) :]
                if whole:
                    self._keep(whole)
                return
            stop = match.start()
            if stop > pos:
                self._keep(data[pos:stop])
            if data[stop] == 0x22:  # the closing quote
                if self._cutting:
                    out += CUT_MARK_BYTES
                    self.cut += 1
                out += b'"'
                self._in_string = False
                pos = stop + 1
                continue
            size = _escape_size(data, stop)
            if size == 0 or stop + size > end:
                self._carry = data[stop:]  # finish the escape with the next chunk
                return
            self._keep(data[stop : stop + size], atomic=True)
            pos = stop + size

    def close(self) -> bytes:
        """The body as cut. A string still open (a truncated body) is closed as cut."""
        if self._in_string and (self._cutting or self._carry):
            self.output += CUT_MARK_BYTES
            self.cut += 1
        self._carry = b""
        return bytes(self.output)

    def _keep(self, piece: bytes, *, atomic: bool = False) -> None:
        if self._cutting:
            return
        room = self.max_field_bytes - self._kept
        if len(piece) <= room:
            self.output += piece
            self._kept += len(piece)
            return
        self._cutting = True
        if not atomic:
            self.output += _utf8_safe(piece[:room])
