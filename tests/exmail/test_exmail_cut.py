"""Cutting over-long strings of a listen body as it streams in (relay.exmail._cut): pure."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.exmail import NewMail, parse_listen
from relay.exmail._cut import CUT_MARK, StringCutter


def cut(body: bytes, cap: int, pieces: list[int] | None = None) -> tuple[bytes, int]:
    cutter = StringCutter(cap)
    if pieces is None:
        cutter.feed(body)
    else:
        start = 0
        for size in pieces:
            cutter.feed(body[start : start + size])
            start += size
        cutter.feed(body[start:])
    return cutter.close(), cutter.cut


def test_short_strings_pass_unchanged_and_long_ones_are_cut_and_marked() -> None:
    body = json.dumps({"UserName": "a@x.com", "Summary": "y" * 100}).encode()
    out, count = cut(body, 16)
    assert count == 1
    decoded = json.loads(out)
    assert decoded["UserName"] == "a@x.com"
    assert decoded["Summary"] == "y" * 16 + CUT_MARK


def test_a_cut_never_splits_a_utf8_character_or_an_escape() -> None:
    text = "邮" * 10  # three bytes each
    out, _ = cut(json.dumps({"s": text}, ensure_ascii=False).encode(), 16)
    assert json.loads(out)["s"] == "邮" * 5 + CUT_MARK  # 15 bytes kept, not 16
    escaped = json.dumps({"s": "é" * 10}).encode()  # \u00e9 six bytes each
    out, _ = cut(escaped, 16)
    assert json.loads(out)["s"] == "éé" + CUT_MARK
    pairs = json.dumps({"s": "📬" * 5}).encode()  # \ud83d\udcec: twelve bytes, kept whole
    out, _ = cut(pairs, 16)
    assert json.loads(out)["s"] == "📬" + CUT_MARK
    quotes = json.dumps({"s": '"\\' * 20}).encode()
    out, _ = cut(quotes, 17)
    assert json.loads(out)["s"] == '"\\' * 4 + CUT_MARK


def test_the_cut_mail_says_which_fields_were_cut() -> None:
    body = json.dumps(
        [
            {"UserName": "a@x.com", "MailId": "1", "Subject": "s" * 40, "Summary": "z" * 40},
            {"UserName": "b@x.com", "MailId": "2", "Subject": "short", "Summary": ""},
        ]
    ).encode()
    out, count = cut(body, 20)
    assert count == 2
    first, second = parse_listen(out)
    assert isinstance(first, NewMail) and isinstance(second, NewMail)
    assert first.truncated == ("subject", "summary")
    assert first.subject == "s" * 20 and first.summary == "z" * 20
    assert second.truncated == () and second.subject == "short"


def test_a_string_that_never_closes_is_cut_and_the_reader_reports_it() -> None:
    out, count = cut(b'{"UserName": "a@x.com", "Summary": "' + b"q" * 100, 16)
    assert count == 1
    assert out.endswith(b"q" * 16 + CUT_MARK.encode())
    assert len(out) < 60


def test_the_cap_is_checked() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        StringCutter(8)


# Keys stay short (as the protocol's are): two keys cut to one prefix would fold.
_KEYS = st.text(alphabet="abcXYZ_", max_size=6)
documents = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=60),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=4),
    max_leaves=12,
)


def _expected(value: object, cap: int, ascii_only: bool) -> object:
    if isinstance(value, str):
        # The cap counts the bytes of the literal as sent, escapes included.
        literal = json.dumps(value, ensure_ascii=ascii_only).encode()[1:-1]
        return value if len(literal) <= cap else None  # cut strings are checked apart
    if isinstance(value, list):
        return [_expected(v, cap, ascii_only) for v in value]
    if isinstance(value, dict):
        return {k: _expected(v, cap, ascii_only) for k, v in value.items()}
    return value


def _compare(got: object, want: object, original: object) -> None:
    if isinstance(original, str):
        if want is None:  # cut: a prefix of the original, then the mark
            assert isinstance(got, str) and got.endswith(CUT_MARK)
            assert original.startswith(got.removesuffix(CUT_MARK))
        else:
            assert got == original
    elif isinstance(original, list):
        assert isinstance(got, list) and len(got) == len(original)
        for g, w, o in zip(got, want, original, strict=True):  # type: ignore[call-overload]
            _compare(g, w, o)
    elif isinstance(original, dict):
        assert isinstance(got, dict)
        assert got.keys() == original.keys()
        for key, value in original.items():
            _compare(got[key], want[key], value)  # type: ignore[index]
    else:
        assert got == original


@settings(max_examples=300)
@given(
    doc=documents,
    cap=st.integers(min_value=16, max_value=40),
    pieces=st.lists(st.integers(min_value=0, max_value=7), max_size=30),
    ascii_only=st.booleans(),
)
def test_any_json_any_chunking_reads_back_with_only_long_strings_cut(
    doc: object, cap: int, pieces: list[int], ascii_only: bool
) -> None:
    try:
        body = json.dumps(doc, ensure_ascii=ascii_only).encode("utf-8")
    except UnicodeEncodeError:
        return  # a lone surrogate: no UTF-8 body can carry it
    whole, count_whole = cut(body, cap)
    chunked, count_chunked = cut(body, cap, pieces)
    assert chunked == whole and count_chunked == count_whole  # chunking changes nothing
    got = json.loads(whole)
    _compare(got, _expected(doc, cap, ascii_only), doc)
    if count_whole == 0:
        assert got == doc


def test_a_character_split_between_chunks_is_never_cut_in_half() -> None:
    body = json.dumps({"s": "é" * 20}, ensure_ascii=False).encode()
    whole, _ = cut(body, 17)
    for size in range(1, 8):  # every way of splitting the two-byte characters
        chunked, _ = cut(body, 17, [size] * (len(body) // size))
        assert chunked == whole
    assert json.loads(whole)["s"] == "é" * 8 + CUT_MARK
