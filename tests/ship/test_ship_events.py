"""docs/asyncapi.yaml and docs/events.md against the real event builders.

The JSON Schemas live in ``docs/asyncapi.yaml`` (``components.schemas``); events.md
shows the same ones. These tests validate every example and freshly built events
against them, and check that the page and the AsyncAPI document agree.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from relay.core import amqp_message, events
from relay.core.events import Event
from relay.core.listing import StoredMember, diff_listing, profile_digest
from relay.exmail2 import Department, Member
from relay.runtime.members import listed_members

DOCS = Path(__file__).resolve().parents[2] / "docs"
NOW = datetime(2026, 11, 28, 8, 0, 0, 123000, tzinfo=UTC)
PROFILE = {
    "alias": "bob@gzdev.com", "name": "鲍勃", "gender": 2, "position": "", "tel": "",
    "mobile": "", "ext_id": "", "slaves": [], "parties": ["研发部/平台组", "Sales"],
    "open_type": 2,
}  # fmt: skip


@pytest.fixture(scope="module")
def asyncapi() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((DOCS / "asyncapi.yaml").read_text())
    return document


def validator(asyncapi: dict[str, Any], name: str) -> jsonschema.Draft7Validator:
    root = {"$ref": f"#/components/schemas/{name}", "components": asyncapi["components"]}
    return jsonschema.Draft7Validator(root, format_checker=jsonschema.FormatChecker())


def message_for(asyncapi: dict[str, Any], event_type: str) -> dict[str, Any]:
    found = [m for m in asyncapi["components"]["messages"].values() if m["name"] == event_type]
    assert len(found) == 1, event_type
    return found[0]


def schema_name(message: dict[str, Any]) -> str:
    return str(message["payload"]["$ref"].rsplit("/", 1)[1])


def built_events() -> list[Event]:
    return [
        events.mail_new(tenant="acme", user="bob@gzdev.com", mail_id="M1", sender="a@x.cn",
                        receiver="bob@gzdev.com", subject="主题", summary="", unread=None, now=NOW),
        events.mail_new(tenant="acme", user="bob@gzdev.com", mail_id="M2", sender="a@x.cn",
                        receiver="bob@gzdev.com", subject="s", summary="t", unread=549, now=NOW),
        events.mail_new(tenant="acme", user="bob@gzdev.com", mail_id="M3", sender="a@x.cn",
                        receiver="bob@gzdev.com", subject="s", summary="t…", unread=1, now=NOW,
                        truncated=("subject", "summary")),
        events.mail_unread(tenant="globex-2", user="carol@globex.cn", unread=0, now=NOW),
        events.directory_changed(tenant="acme", old_ver=0, new_ver=1364460338051, count=0,
                                 now=NOW),
        events.user_changed(tenant="acme", alias="bob@gzdev.com", change="added", ver=7,
                            profile=PROFILE, now=NOW),
        events.user_changed(tenant="acme", alias="bob@gzdev.com", change="updated", ver=8,
                            profile=PROFILE, now=NOW),
        events.user_changed(tenant="acme", alias="bob@gzdev.com", change="updated", ver=9,
                            profile=None, now=NOW),
        events.user_changed(tenant="acme", alias="bob@gzdev.com", change="deleted", ver=10,
                            profile=None, now=NOW),
    ]  # fmt: skip


def test_document_is_asyncapi_3_for_the_topic_exchange(asyncapi: dict[str, Any]) -> None:
    assert asyncapi["asyncapi"] == "3.0.0"
    assert asyncapi["defaultContentType"] == "application/cloudevents+json"
    exchange = asyncapi["components"]["channelBindings"]["exchange"]["amqp"]
    assert exchange["is"] == "routingKey"
    assert exchange["exchange"]["name"] == "exmail.events"
    assert exchange["exchange"]["type"] == "topic"
    assert exchange["exchange"]["durable"] is True
    for operation in asyncapi["operations"].values():
        channel = operation["channel"]["$ref"].rsplit("/", 1)[1]
        assert channel in asyncapi["channels"]


def test_every_event_type_has_a_message_and_its_routing_key(asyncapi: dict[str, Any]) -> None:
    names = sorted(m["name"] for m in asyncapi["components"]["messages"].values())
    assert names == sorted(events.ALL_TYPES)
    for event in built_events():
        key = next(
            name
            for name, m in asyncapi["components"]["messages"].items()
            if m["name"] == event.type
        )
        address = asyncapi["channels"][key]["address"]
        assert address.replace("{tenant}", event.tenant) == event.routing_key
        message = asyncapi["components"]["messages"][key]
        assert message["bindings"]["amqp"]["messageType"] == event.type


def test_every_example_validates_against_its_schema(asyncapi: dict[str, Any]) -> None:
    checked = 0
    for message in asyncapi["components"]["messages"].values():
        headers = validator(asyncapi, "AmqpProperties")
        structured = [e for e in message["examples"] if not e["name"].endswith("(binary mode)")]
        for example in structured:
            validator(asyncapi, schema_name(message)).validate(example["payload"])
            headers.validate(example["headers"])
            assert example["headers"]["message_id"] == example["payload"]["id"]
            assert example["headers"]["type"] == example["payload"]["type"] == message["name"]
            moment = datetime.fromisoformat(example["payload"]["time"].replace("Z", "+00:00"))
            assert example["headers"]["timestamp"] == int(moment.timestamp())
            checked += 1
    assert checked == len(events.ALL_TYPES)


def test_every_message_shows_its_binary_mode_as_the_relay_builds_it(
    asyncapi: dict[str, Any],
) -> None:
    """Each message's binary-mode example is what relay.core.amqp_message makes of its
    structured example, and validates against AmqpBinaryProperties and the data schema."""
    binary_headers = validator(asyncapi, "AmqpBinaryProperties")
    for message in asyncapi["components"]["messages"].values():
        structured, binary_example = message["examples"]
        assert binary_example["name"] == structured["name"] + " (binary mode)"
        built = amqp_message.binary(json.dumps(structured["payload"]).encode())
        properties = {**structured["headers"], "content_type": built.content_type,
                      "headers": dict(built.headers)}  # fmt: skip
        assert binary_example["headers"] == properties
        assert binary_example["payload"] == json.loads(built.body)
        binary_headers.validate(binary_example["headers"])
        data_schema = validator(asyncapi, schema_name(message))
        data_schema.validate({**structured["payload"], "data": binary_example["payload"]})
    for event in built_events():
        built = amqp_message.binary(event.encode())
        binary_headers.validate(
            {"content_type": built.content_type, "headers": dict(built.headers),
             "message_id": event.id, "type": event.type, "timestamp": 0,
             "app_id": "exmail-relay", "delivery_mode": 2}
        )  # fmt: skip


def api2_directory_events() -> list[Event]:
    """An api2 tenant's directory difference (relay.core.listing, relay.runtime.members):
    the same types must fit the same schemas."""
    departments = [Department(id=1, name="Corp"), Department(id=2**62, name="研发部", parentid=1)]
    members = [
        Member.model_validate({"userid": f"{n}@gzdev.com", "name": n, "department": [1, 2**62],
                               "gender": "2", "enable": enable, "slaves": ["x@gzdev.com"]})
        for n, enable in (("ann", 1), ("bob", 0))
    ]  # fmt: skip
    before = listed_members(departments, members[:1])
    stored = {k: StoredMember(m.alias, profile_digest(m.profile)) for k, m in before.items()}
    baseline = diff_listing("acme", None, before, now=NOW, bootstrap="snapshot").events
    after = dict(listed_members(departments, members[1:]))
    return baseline + diff_listing("acme", stored, after, now=NOW).events


def test_built_events_validate_against_the_schemas(asyncapi: dict[str, Any]) -> None:
    built = api2_directory_events()
    assert {e.type for e in built} == {
        events.DIRECTORY_CHANGED,
        events.USER_ADDED,
        events.USER_DELETED,
    }
    for event in [*built_events(), *built]:
        document = json.loads(event.encode())
        validator(asyncapi, schema_name(message_for(asyncapi, event.type))).validate(document)


TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_traced_events_and_their_headers_validate_against_the_schemas(
    asyncapi: dict[str, Any],
) -> None:
    """Tracing on: the distributed-tracing extension in the document, the attempt's
    context in the headers (docs/operations.md, "Tracing"); a malformed one is refused."""
    attempt = {"traceparent": TRACEPARENT.replace("b7ad", "c8be"), "tracestate": "v=1"}
    for event in built_events():
        body = event.encode_traced(TRACEPARENT, "vendor=1")
        document = json.loads(body)
        assert document["traceparent"] == TRACEPARENT
        schema = validator(asyncapi, schema_name(message_for(asyncapi, event.type)))
        schema.validate(document)
        assert not schema.is_valid({**document, "traceparent": "00-not-a-trace"})
        properties = {"content_type": "application/cloudevents+json", "message_id": event.id,
                      "type": event.type, "timestamp": 0, "app_id": "exmail-relay",
                      "delivery_mode": 2}  # fmt: skip
        validator(asyncapi, "AmqpProperties").validate({**properties, "headers": attempt})
        built = amqp_message.binary(body)
        assert built.headers["cloudEvents_traceparent"] == TRACEPARENT
        validator(asyncapi, "AmqpBinaryProperties").validate(
            {**properties, "content_type": built.content_type,
             "headers": {**built.headers, **attempt}}
        )  # fmt: skip


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (("data", "unread"), -1),
        (("data", "profile"), {"alias": "x"}),
        (("type",), "exmail.mail.read"),
        (("time",), "2026-11-28 08:00:00"),
        (("id",), "not-hex"),
        (("data", "extra"), 1),
    ],
)
def test_schemas_reject_wrong_documents(
    asyncapi: dict[str, Any], field: tuple[str, ...], value: object
) -> None:
    base = {
        ("data", "unread"): built_events()[1],
        ("data", "profile"): built_events()[4],
    }.get(field, built_events()[1])
    document = json.loads(base.encode())
    target = document
    for part in field[:-1]:
        target = target[part]
    target[field[-1]] = value
    schema = validator(asyncapi, schema_name(message_for(asyncapi, base.type)))
    assert not schema.is_valid(document)


def test_deleted_user_requires_a_null_profile(asyncapi: dict[str, Any]) -> None:
    deleted = json.loads(built_events()[-1].encode())
    deleted["data"]["profile"] = PROFILE
    assert not validator(asyncapi, "UserDeletedEvent").is_valid(deleted)


def test_events_md_shows_exactly_the_asyncapi_schemas(asyncapi: dict[str, Any]) -> None:
    text = (DOCS / "events.md").read_text()
    schemas = asyncapi["components"]["schemas"]
    shown = re.findall(r"Schema(?: of `data`)? \(`(\w+)`\):\n\n```json\n(.*?)\n```", text, re.S)
    assert {name for name, _ in shown} >= {
        "MailNewData", "MailUnreadData", "DirectoryChangedData", "UserAddedData",
        "UserUpdatedData", "UserDeletedData", "Profile",
    }  # fmt: skip
    for name, block in shown:
        assert json.loads(block) == schemas[name], f"events.md shows a stale {name}"
    for event_type in events.ALL_TYPES:
        assert f"## `{event_type}`" in text
