"""Typed views of the second API's answers, tolerant the way the notes require (§1).

Built on :class:`relay.exmail._models._Tolerant` (keys matched case-insensitively with
spaces and underscores ignored, strings stripped, numbers taken as strings where a string
is expected, unknown keys ignored), plus what this API needs:

- every int-ish field takes a JSON number or a numeric string (``"gender": "1"``,
  ``"enable": "1"``, ``"errcode": "40001"``): :data:`Int`;
- department ids are 64-bit and above 2**53 (``4913577855806636138``): :data:`Int64`
  takes a JSON integer or a numeric string and refuses a float unless it is integral
  and at most 2**53, so a value a float already rounded is never passed on as an id.
  The body is decoded by :func:`relay.exmail2._decode.decode_answer`, which keeps JSON
  integers exact (Python ints), never floats;
- the doc's ``user/simplelist`` example spells ``department`` as ``t``: both are read;
- ``tag`` answers' ``invalidlist`` is one ``|``-joined string, split here.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, SecretStr

from relay.exmail._models import AccountType, Gender, _Tolerant

__all__ = [
    "AllowType",
    "BatchJobEntry",
    "CheckEntry",
    "Department",
    "Group",
    "Int",
    "Int64",
    "LoginLogEntry",
    "LoginUrl",
    "MailLogEntry",
    "MailStatus",
    "Member",
    "MemberBrief",
    "OperationLogEntry",
    "Tag",
    "TagChange",
    "TagMembers",
    "TokenAnswer",
    "UserOption",
]

MAX_EXACT_FLOAT = 2**53


def _int(value: Any) -> Any:
    """A JSON number or a numeric string, as an int; other values are left to pydantic
    (which refuses them)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip()
        return int(text) if text.removeprefix("-").isdigit() else value
    if isinstance(value, float):
        if value.is_integer() and abs(value) <= MAX_EXACT_FLOAT:
            return int(value)
        raise ValueError("an integer id arrived as an inexact float")
    return value


Int = Annotated[int, BeforeValidator(_int)]
Int64 = Annotated[int, BeforeValidator(_int)]
"""A department id: exact, 64-bit (``_int`` refuses a float that lost precision)."""


def _ids(value: Any) -> Any:
    if value is None:
        return ()
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        return (value,)
    return value


def _texts(value: Any) -> Any:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split("|") if part.strip())
    return value


Ids = Annotated[tuple[Int64, ...], BeforeValidator(_ids)]
Texts = Annotated[tuple[str, ...], BeforeValidator(_texts)]


class AllowType(IntEnum):
    """Who may send to a mail group (``allow_type``)."""

    COMPANY = 0
    ANYONE = 1
    GROUP_MEMBERS = 2
    LISTED = 3


class TokenAnswer(_Tolerant):
    """``gettoken``: the token is held as a secret."""

    access_token: Annotated[
        SecretStr, BeforeValidator(lambda v: v.strip() if isinstance(v, str) else v)
    ]
    expires_in: Int = 7200


class Department(_Tolerant):
    """A department of ``department/list`` or ``department/search`` (``path`` only there)."""

    id: Int64
    name: str = ""
    parentid: Int64 = 0
    order: Int = 0
    path: str = ""


class MemberBrief(_Tolerant):
    """A ``user/simplelist`` entry (also a tag's member: ``userid`` and ``name``)."""

    key_aliases: ClassVar[Mapping[str, str]] = {"t": "department"}
    userid: str
    name: str = ""
    department: Ids = ()


class Member(_Tolerant):
    """``user/get`` and a ``user/list`` entry. ``enable``: 1 enabled, 0 disabled."""

    key_aliases: ClassVar[Mapping[str, str]] = {"t": "department"}
    userid: str
    name: str = ""
    department: Ids = ()
    position: str = ""
    mobile: str = ""
    tel: str = ""
    extid: str = ""
    gender: Annotated[Gender, BeforeValidator(_int)] = Gender.UNSET
    enable: Int = 1
    slaves: Texts = ()
    cpwd_login: Int = 0


class CheckEntry(_Tolerant):
    """One ``user/batchcheck`` entry: -1 invalid, 0 free, 1 account, 2 alias, 3 group."""

    user: str
    type: Annotated[AccountType, BeforeValidator(_int)]


class Group(_Tolerant):
    """``group/get``."""

    groupid: str
    groupname: str = ""
    userlist: Texts = ()
    grouplist: Texts = ()
    department: Ids = ()
    allow_type: Annotated[AllowType, BeforeValidator(_int)] = AllowType.COMPANY
    allow_userlist: Texts = ()


class Tag(_Tolerant):
    """A ``tag/list`` entry."""

    tagid: Int
    tagname: str = ""


class TagMembers(_Tolerant):
    """``tag/get``: the tag's name, members and departments."""

    tagname: str = ""
    userlist: tuple[MemberBrief, ...] = ()
    partylist: Ids = ()


class TagChange(_Tolerant):
    """``tag/addtagusers`` / ``tag/deltagusers``: what was refused (empty: nothing)."""

    invalidlist: Texts = ()
    invalidparty: Ids = ()


class LoginUrl(_Tolerant):
    """``service/get_login_url``: a one-time URL and its lifetime in seconds."""

    login_url: str
    expires_in: Int = 300


class MailStatus(_Tolerant):
    """``log/mailstatus``: mails sent and received in the period."""

    sendsum: Int = 0
    recvsum: Int = 0


class MailLogEntry(_Tolerant):
    """``log/mail``: ``mailtype`` 1 sent, 2 received; ``status`` see the notes §7."""

    mailtype: Int = 0
    subject: str = ""
    sender: str = ""
    receiver: str = ""
    time: Int = 0
    status: Int = 0


class LoginLogEntry(_Tolerant):
    """``log/login``: ``type`` 1 web, 2 mobile, 3 QQMail app, 4 client, 5 other."""

    time: Int = 0
    ip: str = ""
    type: Int = 0


class BatchJobEntry(_Tolerant):
    time: Int = 0
    operator: str = ""
    type: Int = 0
    status: Int = 0


class OperationLogEntry(_Tolerant):
    time: Int = 0
    operator: str = ""
    type: Int = 0
    operand: str = ""
    remark: str = ""


class UserOption(_Tolerant):
    """One feature setting of a member: ``type`` 1-4, ``value`` ``"0"``/``"1"`` (a string)."""

    type: Int
    value: str = ""
