"""Structured and binary AMQP messages from journaled CloudEvents: pure, no I/O."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.core import events
from relay.core.amqp_message import MessageError, amqp_message, binary, structured

NOW = datetime(2026, 11, 28, 8, 0, 0, 123000, tzinfo=UTC)


def mail(subject: str = '主题 "quoted"\n', summary: str = "😀") -> events.Event:
    return events.mail_new(tenant="acme", user="bob@acme.test", mail_id="M1", sender="a@x.cn",
                           receiver="bob@acme.test", subject=subject, summary=summary,
                           unread=3, now=NOW)  # fmt: skip


def test_structured_is_the_stored_document_as_it_is() -> None:
    body = mail().encode()
    message = structured(body)
    assert message.body is body
    assert message.content_type == "application/cloudevents+json"
    assert dict(message.headers) == {}
    assert amqp_message(body) == message


@pytest.mark.parametrize("prefix", ["cloudEvents_", "cloudEvents:"])
def test_binary_puts_attributes_in_prefixed_headers_and_data_in_the_body(prefix: str) -> None:
    event = mail()
    message = binary(event.encode(), prefix=prefix)  # type: ignore[arg-type]
    assert message.content_type == "application/json"
    assert dict(message.headers) == {
        f"{prefix}specversion": "1.0",
        f"{prefix}id": event.id,
        f"{prefix}source": "exmail-relay/acme",
        f"{prefix}type": "exmail.mail.new",
        f"{prefix}subject": "bob@acme.test",
        f"{prefix}time": "2026-11-28T08:00:00.123Z",
    }
    assert json.loads(message.body) == dict(event.data)
    assert amqp_message(event.encode(), mode="binary", prefix=prefix) == message  # type: ignore[arg-type]


def test_binary_keeps_every_attribute_of_every_event_type() -> None:
    built = [
        mail(),
        events.mail_unread(tenant="acme", user="bob@acme.test", unread=0, now=NOW),
        events.directory_changed(tenant="acme", old_ver=1, new_ver=2, count=0, now=NOW),
        events.user_changed(tenant="acme", alias="a@acme.test", change="deleted", ver=2,
                            profile=None, now=NOW),
    ]  # fmt: skip
    for event in built:
        document = json.loads(event.encode())
        message = binary(event.encode())
        rebuilt = {k.removeprefix("cloudEvents_"): v for k, v in message.headers.items()}
        rebuilt["datacontenttype"] = message.content_type
        rebuilt["data"] = json.loads(message.body)
        assert rebuilt == document


def test_a_lone_surrogate_becomes_its_escape_in_headers_and_stays_json_in_the_body() -> None:
    event = events.user_changed(tenant="acme", alias="x\ud800@acme.test", change="deleted",
                                ver=2, profile=None, now=NOW)  # fmt: skip
    message = binary(event.encode())
    assert message.headers["cloudEvents_subject"] == "x\\ud800@acme.test"
    message.headers["cloudEvents_subject"].encode("utf-8")  # an AMQP string can carry it
    assert json.loads(message.body)["alias"] == "x\ud800@acme.test"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"id": 7, "data": {}}', "'id' is not a string"),
        (b'{"id": "a", "data_base64": "AA=="}', "data_base64"),
        (b'{"id": "a", "datacontenttype": 1}', "'datacontenttype' is not a string"),
    ],
)
def test_a_body_binary_mode_cannot_carry_is_a_clear_error(body: bytes, error: str) -> None:
    with pytest.raises(MessageError, match=error):
        binary(body)


def test_no_data_is_an_empty_body() -> None:
    message = binary(b'{"specversion":"1.0","id":"a","source":"s","type":"t"}')
    assert message.body == b""
    assert message.content_type == "application/json"


@given(st.text(), st.text())
def test_binary_data_round_trips_any_text(subject: str, summary: str) -> None:
    event = mail(subject, summary)
    message = binary(event.encode())
    assert json.loads(message.body) == json.loads(event.encode())["data"]
    for value in message.headers.values():
        value.encode("utf-8")
