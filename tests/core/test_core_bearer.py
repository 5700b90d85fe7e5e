"""Token files of ``[http] auth_token_file`` and ``admin_token_file``: the format (one
token a line, ``NAME TOKEN``, comments), its errors naming lines and never a value, and
matching against every token of a set."""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from relay.core.bearer import BearerToken, TokenFileError, TokenSet, parse_token_file

OLD = "old-token-0123456789abcdef"
NEW = "new-token-fedcba9876543210"


def test_a_file_lists_tokens_in_order_named_or_not() -> None:
    text = f"""
    # rotation of 2026-03: NEW first (sent to peers), OLD until every client moved

    ci-2026\t{NEW}
    {OLD}
    """
    tokens = parse_token_file(text)
    assert [t.name for t in tokens.tokens] == ["ci-2026", None]
    assert tokens.values() == (NEW, OLD)
    assert tokens.first == BearerToken(NEW, "ci-2026")
    # A token may hold any character but whitespace, ':' and '#' included.
    odd = "a:b#c/d+e=f_g.h~i-j"
    assert parse_token_file(f"{odd}\nops {odd}x").values() == (odd, odd + "x")


def test_match_finds_whichever_token_was_offered() -> None:
    tokens = parse_token_file(f"ci {NEW}\n{OLD}\n")
    assert tokens.match(NEW) == BearerToken(NEW, "ci")
    assert tokens.match(OLD) == BearerToken(OLD)
    for other in ("", NEW[:-1], NEW + "x", f"ci {NEW}", "ci", OLD.upper()):
        assert tokens.match(other) is None, other


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "holds no token"),
        ("# only a comment\n\n   \n", "holds no token"),
        (f"a b {OLD}", "line 1: expected TOKEN or NAME TOKEN, found 3 words"),
        (f"{OLD}\n-bad {NEW}", "line 2: a token's name is 1 to 63"),
        (f"{'n' * 64} {NEW}", "line 1: a token's name is 1 to 63"),
        (f"0123abcd4567 {NEW}", "line 1: a token's name cannot be 12 hex digits"),
        (f"ci {OLD}\nci {NEW}", "line 2: the name 'ci' is used twice"),
        (f"{OLD}\n\n{OLD}", "line 3: the same token as line 1"),
        (f"{OLD}\nshort-one", "line 2: a token must be at least 16 characters"),
        ("ci short-one", "line 1: a token must be at least 16 characters"),
        ("short-one", "line 1: a token must be at least 16 characters"),
    ],
)
def test_a_bad_file_names_the_line_never_the_token(text: str, error: str) -> None:
    with pytest.raises(TokenFileError) as caught:
        parse_token_file(text)
    assert error in str(caught.value)
    for word in text.split():
        if len(word) >= 9 and word not in {"only", "comment"}:
            assert word not in str(caught.value)


def test_a_lone_unnamed_token_keeps_the_old_minimum() -> None:
    # auth_token never had a minimum: a one-token file from before rotation still works,
    # but a file in the rotation format (several tokens, or a name) needs 16 each.
    assert parse_token_file("short\n", lone_min_length=0).values() == ("short",)
    with pytest.raises(TokenFileError, match="at least 16"):
        parse_token_file(f"short\n{OLD}\n", lone_min_length=0)
    with pytest.raises(TokenFileError, match="at least 16"):
        parse_token_file("ops short\n", lone_min_length=0)


def test_no_repr_shows_a_token() -> None:
    tokens = parse_token_file(f"ci {NEW}\n{OLD}\n")
    shown = repr(tokens) + repr(tokens.tokens) + str(tokens.first) + tokens.describe()
    assert NEW not in shown and OLD not in shown
    assert tokens.describe() == "2 tokens (ci, 1 unnamed)"
    assert TokenSet.of(OLD).describe() == "1 token (1 unnamed)"
    with pytest.raises(ValueError, match="at least one"):
        TokenSet(())


_TOKEN = st.text(
    st.characters(categories=["L", "N", "P", "S"], exclude_characters="#"),
    min_size=16,
    max_size=40,
)
_NAME = st.from_regex(r"[a-z][a-z0-9_.-]{0,20}", fullmatch=True).filter(
    lambda name: not re.fullmatch(r"[0-9a-f]{12}", name)
)
_ENTRIES = st.lists(
    st.tuples(st.none() | _NAME, _TOKEN), min_size=1, max_size=6, unique_by=lambda e: e[1]
)


@given(_ENTRIES)
def test_a_written_file_reads_back(entries: list[tuple[str | None, str]]) -> None:
    names = [n for n, _ in entries if n is not None]
    assume(len(names) == len(set(names)))
    text = "\n".join(token if name is None else f"{name}  {token}" for name, token in entries)
    tokens = parse_token_file("# header\n" + text + "\n")
    assert [(t.name, t.value) for t in tokens.tokens] == entries
    for name, token in entries:
        found = tokens.match(token)
        assert found is not None and found.name == name
