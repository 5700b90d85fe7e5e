"""The pure listen parser: classification, every framing, and that it never raises."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from relay.exmail import (
    KeepAlive,
    ListenError,
    ListenMessage,
    Malformed,
    NewMail,
    Unknown,
    UnreadCount,
    VersionUpdate,
    parse_listen,
)


def test_classification_by_keys() -> None:
    body = (
        '{"Ret": 0}{"Ver": "5"}{"UserName": "a@x.com", "NewCount": "3"}'
        '{"UserName": "a@x.com", "MailId": "m1", "Subject": "Hi"}'
        '{"errcode": "1200", "error": "invalid_token"}{"Ret": 0, "Extra": 1}'
    )
    assert parse_listen(body) == [
        KeepAlive(0),
        VersionUpdate(5),
        UnreadCount("a@x.com", 3),
        NewMail("a@x.com", "m1", "", "", "Hi", "", None),
        ListenError("1200", "invalid_token"),
        Unknown({"Ret": 0, "Extra": 1}),
    ]


def test_empty_body_is_no_messages() -> None:
    assert parse_listen(b"") == []
    assert parse_listen(" \n ") == []


def test_malformed_fragments_keep_neighbours() -> None:
    messages = parse_listen('{"Ret": 0}\n{"Ver": \n[{"Ver": "9"}, 42]\n{"Ret": 0}')
    assert messages[0] == KeepAlive(0)
    assert messages[-1] == KeepAlive(0)
    assert VersionUpdate(9) in messages
    assert sum(isinstance(m, Malformed) for m in messages) == 2  # the cut object, and 42


def test_bad_field_types_are_malformed_not_errors() -> None:
    [message] = parse_listen('{"Ver": "not-a-number"}')
    assert isinstance(message, Malformed)
    assert "not-a-number" in message.excerpt


def test_excerpt_is_truncated() -> None:
    [message] = parse_listen("{" + "x" * 5000)
    assert isinstance(message, Malformed)
    assert len(message.excerpt) <= 200


def test_unknown_raw_is_read_only() -> None:
    [message] = parse_listen('{"Hello": 1}')
    assert isinstance(message, Unknown)
    assert message.raw == {"Hello": 1}
    assert not hasattr(message.raw, "__setitem__")


@given(st.binary())
def test_arbitrary_bytes_never_raise(body: bytes) -> None:
    messages = parse_listen(body)
    assert isinstance(messages, list)


@given(st.text())
def test_arbitrary_text_never_raises(body: str) -> None:
    for message in parse_listen(body):
        assert isinstance(
            message,
            KeepAlive | VersionUpdate | NewMail | UnreadCount | ListenError | Unknown | Malformed,
        )


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
    max_leaves=10,
)


@given(
    st.lists(st.dictionaries(st.text(max_size=6), json_like, max_size=4), max_size=5),
    st.sampled_from(["", "\n", ",", " "]),
)
def test_any_json_objects_give_one_message_each(values: list[Any], sep: str) -> None:
    body = sep.join(json.dumps(v) for v in values)
    assert len(parse_listen(body)) == len(values)


# -- round trip: generated messages through every framing ------------------------------

clean = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=20,
).map(str.strip)
nonempty = clean.filter(bool)
count = st.integers(min_value=0, max_value=10**6)

messages = st.one_of(
    st.builds(KeepAlive, st.integers(min_value=-5, max_value=5)),
    st.builds(VersionUpdate, st.integers(min_value=0, max_value=10**14)),
    st.builds(NewMail, nonempty, nonempty, clean, clean, clean, clean, st.none() | count),
    st.builds(UnreadCount, nonempty, count),
    st.builds(ListenError, nonempty, clean),
)


def _wire(message: ListenMessage, spaced: bool, as_strings: bool) -> dict[str, Any]:
    def num(n: int) -> Any:
        return str(n) if as_strings else n

    def key(k: str) -> str:
        return f" {k} " if spaced else k

    if isinstance(message, KeepAlive):
        obj: dict[str, Any] = {"Ret": message.ret}
    elif isinstance(message, VersionUpdate):
        obj = {"Ver": num(message.ver)}
    elif isinstance(message, NewMail):
        obj = {
            "UserName": message.user,
            "MailId": message.mail_id,
            "Sender": message.sender,
            "Receiver": message.receiver,
            "Subject": message.subject,
            "Summary": message.summary,
        }
        if message.new_count is not None:
            obj["NewCount"] = num(message.new_count)
    elif isinstance(message, UnreadCount):
        obj = {"UserName": message.user, "NewCount": num(message.new_count)}
    else:
        assert isinstance(message, ListenError)
        obj = {"errcode": message.errcode, "error": message.error}
    return {key(k): v for k, v in obj.items()}


def _dump(obj: dict[str, Any], trailing_comma: bool) -> str:
    text = json.dumps(obj, ensure_ascii=False)
    if trailing_comma and obj:
        text = text[:-1] + ",}"
    return text


@given(
    st.lists(messages, min_size=1, max_size=6),
    st.sampled_from(["single", "array", "concatenated", "newlines"]),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)
def test_round_trip_through_every_framing(
    batch: list[ListenMessage], framing: str, spaced: bool, as_strings: bool, trailing: bool
) -> None:
    parts = [_dump(_wire(m, spaced, as_strings), trailing) for m in batch]
    if framing == "single":
        batch = batch[:1]
        body = parts[0]
    elif framing == "array":
        body = "[" + ", ".join(parts) + (",]" if trailing else "]")
    elif framing == "concatenated":
        body = "".join(parts)
    else:
        body = "\n".join(parts) + "\n"
    assert parse_listen(body.encode()) == batch
