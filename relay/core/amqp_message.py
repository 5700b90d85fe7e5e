"""What one AMQP message carries: a journaled CloudEvent in structured or binary mode.

Pure code, no I/O. Where it sits: the journal stores every event as its structured
CloudEvents document (:meth:`relay.core.events.Event.encode`); :mod:`relay.sinks.amqp`
turns each stored body into an :class:`AmqpMessage` with :func:`amqp_message`, then
only adds the broker properties (message id, persistence, ...).

The two content modes of the CloudEvents AMQP protocol binding (``[amqp]
content_mode``):

- **structured** (the default): the body is the whole document, content type
  ``application/cloudevents+json``, no CloudEvents headers. Any CloudEvents SDK's JSON
  format reader takes it as is.
- **binary**: the body is ``data`` alone, with ``datacontenttype`` as the message's
  content type, and every other attribute is an application header named
  ``<prefix><attribute>``: ``cloudEvents_id``, ``cloudEvents_time``, ... The binding
  prefers the ``cloudEvents_`` prefix (valid in JMS property names); ``cloudEvents:``
  is the older form that Spring Cloud Function's message converter reads
  (``[amqp] header_prefix``). Attribute values go out as strings (``time`` in its RFC
  3339 form: the binding lets receivers accept the string form, and an AMQP 0-9-1
  timestamp would lose the milliseconds).

The body is converted from the stored bytes rather than from an :class:`Event`, so
what goes out in binary mode is exactly what was journaled, and a row journaled before
the mode was switched goes out in the new mode too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from relay.core.events import CONTENT_TYPE, encode_json

__all__ = [
    "CONTENT_MODES",
    "HEADER_PREFIXES",
    "AmqpMessage",
    "ContentMode",
    "HeaderPrefix",
    "MessageError",
    "amqp_message",
    "binary",
    "structured",
]

ContentMode = Literal["structured", "binary"]
HeaderPrefix = Literal["cloudEvents_", "cloudEvents:"]
CONTENT_MODES: Final[tuple[ContentMode, ...]] = ("structured", "binary")
HEADER_PREFIXES: Final[tuple[HeaderPrefix, ...]] = ("cloudEvents_", "cloudEvents:")

# The data's content type when a document names none (the CloudEvents JSON format's
# default for a JSON ``data`` member).
DEFAULT_DATA_CONTENT_TYPE: Final = "application/json"


class MessageError(ValueError):
    """A stored body is not a CloudEvents document that binary mode can carry."""


@dataclass(frozen=True, slots=True)
class AmqpMessage:
    """Body, content type and application headers of one message (no broker properties)."""

    body: bytes
    content_type: str
    headers: Mapping[str, str] = field(default_factory=dict)


def structured(body: bytes) -> AmqpMessage:
    """The stored document as it is: structured content mode."""
    return AmqpMessage(body=body, content_type=CONTENT_TYPE)


def binary(body: bytes, *, prefix: HeaderPrefix = "cloudEvents_") -> AmqpMessage:
    """The stored document in binary content mode: attributes as ``prefix``-named
    headers, ``data`` as the body. Raises :class:`MessageError` for a body that is not
    a JSON object with string attributes (never the case for a body the relay wrote)."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MessageError(f"the stored event is not JSON ({type(exc).__name__})") from None
    if not isinstance(document, dict):
        raise MessageError("the stored event is not a JSON object")
    if "data_base64" in document:
        raise MessageError("binary mode does not carry data_base64")
    content_type = document.pop("datacontenttype", DEFAULT_DATA_CONTENT_TYPE)
    has_data = "data" in document
    data = document.pop("data", None)
    headers: dict[str, str] = {}
    for name, value in document.items():
        if not isinstance(value, str):
            raise MessageError(f"attribute {name!r} is not a string")
        headers[prefix + name] = _header_safe(value)
    if not isinstance(content_type, str):
        raise MessageError("attribute 'datacontenttype' is not a string")
    return AmqpMessage(
        body=encode_json(data) if has_data else b"",
        content_type=content_type,
        headers=headers,
    )


def amqp_message(
    body: bytes, *, mode: ContentMode = "structured", prefix: HeaderPrefix = "cloudEvents_"
) -> AmqpMessage:
    """The message for one stored body in ``mode``."""
    if mode == "binary":
        return binary(body, prefix=prefix)
    return structured(body)


def _header_safe(value: str) -> str:
    # A lone surrogate (JSON can carry "\ud800") cannot be encoded as an AMQP string:
    # it goes out as that escape's text, as it does in the JSON bodies.
    return value.encode("utf-8", "backslashreplace").decode("utf-8")
