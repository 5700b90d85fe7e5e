"""The second Exmail API's callback XML: the POST envelope and the decrypted messages.

Pure code, no I/O (``spec/EXMAIL-API-2-NOTES.md`` §9.3, §9.6). Both are flat:
``<xml><Tag>value</Tag>…</xml>``, strings in CDATA, numbers bare, element order free.

- **Safe parsing**: expat directly, with a handler that refuses any ``<!DOCTYPE``, so
  no DTD, no entity declaration, no external entity is ever read (and no entity
  expansion bomb); only the five predefined entities and character references exist.
- **The envelope** (:func:`envelope_ciphertext`): only ``Encrypt`` is relied on, found
  by tag name at any depth; when no element is named so, the last CDATA section is
  taken (PYCB reads the third of three). The other elements are unverified and ignored
  (§11 q1).
- **Messages** (:func:`parse_message`): by tag name; ``MsgType`` compared
  case-insensitively: ``Mail`` → :class:`MailMessage`, ``UnRead`` →
  :class:`UnreadMessage`, anything else → :class:`OtherMessage` (logged and counted by
  the receiver, never an error: §11 q2).

:func:`mail_xml`, :func:`unread_xml` and :func:`envelope_xml` are the sender's side.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final
from xml.parsers import expat

__all__ = [
    "DEFAULT_ENVELOPE",
    "MailMessage",
    "Message",
    "MessageError",
    "OtherMessage",
    "UnreadMessage",
    "envelope_ciphertext",
    "envelope_xml",
    "mail_xml",
    "parse_flat",
    "parse_message",
    "unread_xml",
]

DEFAULT_ENVELOPE: Final = (
    "<xml><CorpID><![CDATA[{corpid}]]></CorpID><AgentID><![CDATA[{agentid}]]></AgentID>"
    "<Encrypt><![CDATA[{msg_encrypt}]]></Encrypt></xml>"
)


class MessageError(ValueError):
    """XML that is not a callback envelope or message. The message names what is wrong,
    never a value."""


@dataclass(frozen=True, slots=True)
class Flat:
    """A parsed document: the text of each element below the root by tag name (the
    first of a name), and every CDATA section in document order."""

    root: str
    fields: dict[str, str] = field(default_factory=dict)
    cdata: list[str] = field(default_factory=list)


MAX_DEPTH: Final = 8


class _DoctypeRefused(Exception):
    pass


def parse_flat(raw: bytes) -> Flat:
    """Parse ``raw``: the text of every element below the root, by tag name (the first
    of a repeated name counts), and the CDATA sections. Raises :class:`MessageError` on
    any XML error, on a DTD, or past :data:`MAX_DEPTH` levels."""
    # UTF-8, whatever an ``<?xml encoding=...?>`` declaration says: WeCom's messages are
    # UTF-8, and a declared codec expat does not know (gbk, hex, idna, ...) would raise
    # ValueError or LookupError, not ExpatError, before any signature was checked.
    parser = expat.ParserCreate(encoding="utf-8")
    parser.buffer_text = True
    root = ""
    stack: list[str | None] = []  # the open elements: a recorded name, or None
    texts: dict[str, str] = {}
    cdata: list[str] = []
    in_cdata = False
    piece: list[str] = []

    def start(name: str, _attrs: dict[str, str]) -> None:
        nonlocal root
        if len(stack) >= MAX_DEPTH:
            raise MessageError(f"elements are nested deeper than {MAX_DEPTH} levels")
        if not stack:
            root = name
            stack.append(None)
        elif name in texts:
            stack.append(None)
        else:
            texts[name] = ""
            stack.append(name)

    def end(_name: str) -> None:
        stack.pop()

    def chars(data: str) -> None:
        if in_cdata:
            piece.append(data)
        if stack and (name := stack[-1]) is not None:
            texts[name] += data

    def cdata_start() -> None:
        nonlocal in_cdata
        in_cdata = True
        piece.clear()

    def cdata_end() -> None:
        nonlocal in_cdata
        in_cdata = False
        cdata.append("".join(piece))

    def doctype(*_args: object) -> None:
        raise _DoctypeRefused

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    parser.StartCdataSectionHandler = cdata_start
    parser.EndCdataSectionHandler = cdata_end
    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = doctype
    parser.ExternalEntityRefHandler = lambda *_a: 0
    try:
        parser.Parse(raw, True)
    except _DoctypeRefused:
        raise MessageError("a DTD is not allowed") from None
    except expat.ExpatError as exc:
        raise MessageError(f"not well-formed XML ({expat.errors.messages[exc.code]})") from None
    except (ValueError, LookupError):  # a codec question expat hands to Python
        raise MessageError("not UTF-8 XML") from None
    return Flat(root=root, fields=texts, cdata=cdata)


def envelope_ciphertext(raw: bytes) -> str:
    """The ``Encrypt`` text of a POST body (by tag name; else the last CDATA section)."""
    flat = parse_flat(raw)
    text = flat.fields.get("Encrypt")
    if text is None and flat.cdata:
        text = flat.cdata[-1]
    if text is None or not text.strip():
        raise MessageError("the body holds no Encrypt element")
    return text.strip()


@dataclass(frozen=True, slots=True)
class MailMessage:
    """``MsgType`` Mail: one new mail for one recipient."""

    corpid: str
    mail_id: str
    to_user: str
    from_user: str
    title: str
    time: int
    new_count: int | None


@dataclass(frozen=True, slots=True)
class UnreadMessage:
    """``MsgType`` UnRead: a member's unread count changed."""

    corpid: str
    user: str
    time: int
    unread: int


@dataclass(frozen=True, slots=True)
class OtherMessage:
    """A ``MsgType`` the relay does not know (kept for the log line and the metric)."""

    corpid: str
    msg_type: str


Message = MailMessage | UnreadMessage | OtherMessage


def _required(flat: Flat, name: str) -> str:
    value = flat.fields.get(name)
    if value is None or not value.strip():
        raise MessageError(f"the message has no {name}")
    return value.strip()


def _integer(flat: Flat, name: str, *, required: bool = True) -> int | None:
    value = flat.fields.get(name)
    if value is None or not value.strip():
        if required:
            raise MessageError(f"the message has no {name}")
        return None
    text = value.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        raise MessageError(f"{name} is not a non-negative integer")
    return int(text)


def parse_message(raw: bytes) -> Message:
    """A decrypted message, by ``MsgType`` (case-insensitive)."""
    flat = parse_flat(raw)
    msg_type = _required(flat, "MsgType")
    corpid = (flat.fields.get("CorpID") or "").strip()
    kind = msg_type.lower()
    if kind == "mail":
        time = _integer(flat, "Time")
        assert time is not None
        return MailMessage(
            corpid=corpid,
            mail_id=_required(flat, "MailID"),
            to_user=_required(flat, "ToUserID"),
            from_user=(flat.fields.get("FromUser") or "").strip(),
            title=flat.fields.get("Title") or "",
            time=time,
            new_count=_integer(flat, "NewCount", required=False),
        )
    if kind == "unread":
        time = _integer(flat, "Time")
        unread = _integer(flat, "UnReadCount")
        assert time is not None and unread is not None
        user = _required(flat, "UserID")
        return UnreadMessage(corpid=corpid, user=user, time=time, unread=unread)
    return OtherMessage(corpid=corpid, msg_type=msg_type[:64])


def _cdata(value: str) -> str:
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def mail_xml(
    *,
    corpid: str,
    mail_id: str,
    to_user: str,
    from_user: str,
    title: str,
    time: int,
    new_count: int,
    msg_type: str = "Mail",
) -> bytes:
    """A ``Mail`` message, laid out like the real sample of the notes (§9.6)."""
    return (
        f"<xml><CorpID>{_cdata(corpid)}</CorpID><MsgType>{_cdata(msg_type)}</MsgType>"
        f"<MailID>{_cdata(mail_id)}</MailID><ToUserID>{_cdata(to_user)}</ToUserID>"
        f"<FromUser>{_cdata(from_user)}</FromUser><Title>{_cdata(title)}</Title>"
        f"<Time>{time}</Time><NewCount>{new_count}</NewCount></xml>"
    ).encode()


def unread_xml(
    *, corpid: str, user: str, time: int, unread: int, msg_type: str = "UnRead"
) -> bytes:
    """An ``UnRead`` message, laid out like the real sample of the notes (§9.6)."""
    return (
        f"<xml><CorpID>{_cdata(corpid)}</CorpID><MsgType>{_cdata(msg_type)}</MsgType>"
        f"<UserID>{_cdata(user)}</UserID><Time>{time}</Time>"
        f"<UnReadCount>{unread}</UnReadCount></xml>"
    ).encode()


def envelope_xml(
    msg_encrypt: str, *, corpid: str, agentid: str = "", template: str = DEFAULT_ENVELOPE
) -> bytes:
    """The POST body: ``template`` with ``{corpid}``, ``{agentid}``, ``{msg_encrypt}``."""
    return (
        template.replace("{corpid}", corpid)
        .replace("{agentid}", agentid)
        .replace("{msg_encrypt}", msg_encrypt)
        .encode()
    )
