"""The pure ``listen`` payload parser: bytes in, typed messages out, no I/O.

Why it looks like this: the documents say what a listen response may contain (a
keep-alive, a version update, a new-mail reminder, an unread-count update) but not
how many objects one response carries, and no public client ever parsed one. So
:func:`parse_listen` accepts every framing that could plausibly occur (one object,
a JSON array, objects concatenated or newline-separated) and every typo the
documents show (trailing commas, spaces in keys, numbers as strings). Each object is
classified by its keys alone. Like h11's events, the messages are frozen, slotted
dataclasses, and the parser never raises: an unreadable fragment becomes a
:class:`Malformed` item and the readable objects around it are still returned, so a
listener can count and log the bad part and keep going.

Classification, in order: ``errcode``/``error`` → :class:`ListenError`;
``UserName`` + ``MailId`` → :class:`NewMail`; ``UserName`` + ``NewCount`` →
:class:`UnreadCount`; ``Ver`` → :class:`VersionUpdate`; only ``Ret`` →
:class:`KeepAlive`; anything else → :class:`Unknown`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from relay.exmail._cut import CUT_MARK
from relay.exmail._json import Fault, iter_values, normalize_keys

__all__ = [
    "KeepAlive",
    "ListenError",
    "ListenMessage",
    "Malformed",
    "NewMail",
    "Unknown",
    "UnreadCount",
    "VersionUpdate",
    "parse_listen",
]

EXCERPT_CHARS = 200


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """``{"Ret": 0}``: the server saw us; nothing changed."""

    ret: int


@dataclass(frozen=True, slots=True)
class VersionUpdate:
    """``{"Ver": ...}``: the directory changed; fetch ``user/list`` with the old Ver."""

    ver: int


@dataclass(frozen=True, slots=True)
class NewMail:
    """A new-mail reminder for one account. ``truncated`` names the fields the client
    cut to its ``max_field_bytes`` (:mod:`relay.exmail._cut`), in field order."""

    user: str
    mail_id: str
    sender: str
    receiver: str
    subject: str
    summary: str
    new_count: int | None
    truncated: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class UnreadCount:
    """The unread count of one account changed."""

    user: str
    new_count: int


@dataclass(frozen=True, slots=True)
class ListenError:
    """An error object among the messages (``errcode`` kept as a string)."""

    errcode: str
    error: str


@dataclass(frozen=True, slots=True)
class Unknown:
    """A readable object of no known shape, kept as it came (read-only)."""

    raw: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class Malformed:
    """An unreadable fragment: why, and up to ~200 characters of it."""

    reason: str
    excerpt: str


ListenMessage = (
    KeepAlive | VersionUpdate | NewMail | UnreadCount | ListenError | Unknown | Malformed
)


def parse_listen(body: bytes | str) -> list[ListenMessage]:
    """Every message in one listen response body, in order. Never raises.

    An empty (or whitespace-only) body yields an empty list.
    """
    out: list[ListenMessage] = []
    for value in iter_values(body):
        if isinstance(value, Fault):
            out.append(Malformed(value.reason, _excerpt(value.text)))
        elif isinstance(value, list):
            out.extend(_classify_value(item) for item in value)
        else:
            out.append(_classify_value(value))
    return out


def _excerpt(text: str) -> str:
    text = text.strip()
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"


def _classify_value(value: Any) -> ListenMessage:
    if not isinstance(value, dict):
        return Malformed(f"expected an object, got {type(value).__name__}", _excerpt(repr(value)))
    return classify(value)


def classify(obj: Mapping[str, Any]) -> ListenMessage:
    """One decoded JSON object to its message, by its keys (see the module docstring)."""
    keys = normalize_keys(obj if type(obj) is dict else dict(obj))  # read, not changed
    try:
        if "errcode" in keys or "error" in keys:
            return ListenError(_text(keys.get("errcode", "")), _text(keys.get("error", "")))
        if "username" in keys and "mailid" in keys:
            cut: list[str] = []
            fields = {name: _field(keys.get(key, ""), name, cut) for name, key in _MAIL_FIELDS}
            return NewMail(**fields, new_count=_opt_int(keys.get("newcount")), truncated=tuple(cut))
        if "username" in keys and "newcount" in keys:
            return UnreadCount(_field(keys["username"], "user", []), _int(keys["newcount"]))
        if "ver" in keys:
            return VersionUpdate(_int(keys["ver"]))
        if set(keys) == {"ret"}:
            return KeepAlive(_int(keys["ret"]))
    except ValueError as exc:
        return Malformed(str(exc), _excerpt(repr(dict(obj))))
    return Unknown(MappingProxyType(dict(obj)))


# NewMail's text fields and the (normalized) keys they come from, in field order.
_MAIL_FIELDS = (
    ("user", "username"),
    ("mail_id", "mailid"),
    ("sender", "sender"),
    ("receiver", "receiver"),
    ("subject", "subject"),
    ("summary", "summary"),
)


def _field(value: Any, name: str, cut: list[str]) -> str:
    """The text of one field; a field the client cut loses its mark and is named in ``cut``."""
    text = _text(value)
    if text.endswith(CUT_MARK):
        cut.append(name)
        text = text.removesuffix(CUT_MARK).rstrip()
    return text


def _text(value: Any) -> str:
    if type(value) is str:  # the usual case, first (a listen answer is mostly text)
        return value.strip()
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        raise ValueError("expected a string, got a structure")
    if isinstance(value, bool):
        return str(value).lower()
    return str(value).strip()


def _int(value: Any) -> int:
    if isinstance(value, bool) or value is None:
        raise ValueError(f"expected an integer, got {value!r}"[:120])
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit() and text.isascii():
            return int(text)
    raise ValueError(f"expected an integer, got {value!r}"[:120])


def _opt_int(value: Any) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return _int(value)
    except ValueError:
        return None
