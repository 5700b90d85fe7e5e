"""The second API's requests: checked against the documented limits, rendered as sent.

Pure functions, no I/O. Each builds one request's JSON body (writes, searches, logs) or
query (reads, deletes), raising :class:`~relay.exmail.InvalidRequest` before anything is
sent when a documented limit is broken (notes §4-§8):

- ``userid`` (and group, alias and member addresses) in email form
  (:func:`relay.exmail._validation.check_email`, the first API's rule);
- department ``name`` 1-64 UTF-8 bytes without ``\\ : * ? " < > |``; ids are positive
  64-bit integers (never floats, never bools); at most 20 departments per member;
- member ``name`` 1-64 bytes on create, 0-64 on update; ``position`` 0-64 bytes; at most 5
  ``slaves``; ``gender`` sent as the strings ``"1"``/``"2"`` (LEO: numbers garble Chinese
  text updated with it); ``password`` required on create; ``enable``/``cpwd_login`` 0/1;
- ``user/batchcheck`` at most 20 addresses per call (the client splits longer lists);
- group ``allow_type`` 0-3 and at least one member list; tag names 1-32 characters,
  at most 1000 users and 100 departments per call, not both empty;
- log dates ``YYYY-MM-DD`` (a :class:`datetime.date` is rendered so), begin <= end;
- ``useroption``: types 1-4 to read, 1-3 to write (4 is read-only), values ``"0"``/``"1"``.

Messages name the parameter and the rule, never a password.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import SecretStr

from relay.exmail._exceptions import InvalidRequest
from relay.exmail._models import Gender
from relay.exmail._validation import check_email
from relay.exmail2._models import AllowType

__all__ = [
    "MAX_BATCHCHECK",
    "MAX_MEMBER_DEPARTMENTS",
    "MAX_TAG_PARTIES",
    "MAX_TAG_USERS",
    "Body",
    "check_department_id",
    "check_userid",
    "date_range",
    "department_body",
    "group_body",
    "member_body",
    "option_types",
    "options_body",
    "tag_members_body",
    "tag_name",
]

Body = dict[str, Any]
MAX_NAME_BYTES = 64
MAX_MEMBER_DEPARTMENTS = 20
MAX_SLAVES = 5
MAX_BATCHCHECK = 20
MAX_TAG_NAME = 32
MAX_TAG_USERS = 1000
MAX_TAG_PARTIES = 100
MAX_ID = 2**64 - 1
_FORBIDDEN = set('\\:*?"<>|')
_UNSET: Any = object()


def check_userid(param: str, value: str) -> str:
    if not isinstance(value, str):
        raise InvalidRequest(f"{param} must be an email address")
    return check_email(param, value)


def check_department_id(param: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_ID:
        raise InvalidRequest(f"{param} must be a positive 64-bit integer, got {value!r}")
    return value


def _small_int(param: str, value: Any, allowed: Iterable[int]) -> int:
    choices = tuple(allowed)
    if isinstance(value, bool) and set(choices) == {0, 1}:
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value not in choices:
        raise InvalidRequest(f"{param} must be one of {', '.join(map(str, choices))}")
    return value


def _text(param: str, value: Any, *, low: int, high: int = MAX_NAME_BYTES) -> str:
    if not isinstance(value, str):
        raise InvalidRequest(f"{param} must be a string")
    size = len(value.encode("utf-8"))
    if not low <= size <= high:
        raise InvalidRequest(f"{param} must be {low}-{high} UTF-8 bytes, got {size}")
    return value


def department_name(value: Any) -> str:
    name = _text("name", value, low=1)
    bad = sorted(_FORBIDDEN.intersection(name))
    if bad or not name.strip():
        raise InvalidRequest(f"name must not be blank nor hold {' '.join(bad) or 'spaces only'}")
    return name


def department_body(
    *, id: int | None = None, name: Any = _UNSET, parentid: Any = _UNSET, order: Any = _UNSET
) -> Body:
    """``department/create`` (no ``id``) or ``department/update`` (``id``; omitted = unchanged)."""
    body: Body = {}
    if id is not None:
        body["id"] = check_department_id("id", id)
    if name is not _UNSET and name is not None:
        body["name"] = department_name(name)
    if parentid is not _UNSET and parentid is not None:
        body["parentid"] = check_department_id("parentid", parentid)
    if order is not _UNSET and order is not None:
        if isinstance(order, bool) or not isinstance(order, int) or not 0 <= order < 2**32:
            raise InvalidRequest("order must be an integer in [0, 2**32)")
        body["order"] = order
    return body


def _addresses(param: str, values: Any, *, most: int | None = None) -> list[str]:
    if isinstance(values, str):
        values = [values]  # a lone string is almost always meant as a one-element list
    items = [check_userid(param, v) for v in values]
    if most is not None and len(items) > most:
        raise InvalidRequest(f"{param}: at most {most}, got {len(items)}")
    return items


def _department_ids(param: str, values: Any, *, most: int) -> list[int]:
    if isinstance(values, int):
        values = [values]
    ids = [check_department_id(param, v) for v in values]
    if len(ids) > most:
        raise InvalidRequest(f"{param}: at most {most} departments, got {len(ids)}")
    return ids


def member_body(userid: str, *, create: bool, **fields: Any) -> Body:
    """``user/create`` (``create``) or ``user/update``: fields left ``None`` are not sent."""
    body: Body = {"userid": check_userid("userid", userid)}
    given = {k: v for k, v in fields.items() if v is not None}
    unknown = set(given) - {
        "name", "department", "password", "position", "mobile", "tel", "extid",
        "gender", "slaves", "cpwd_login", "enable",
    }  # fmt: skip
    if unknown or (create and "enable" in given):
        raise InvalidRequest(f"unknown member field(s) {sorted(unknown or {'enable'})}")
    if create:
        for required in ("name", "department", "password"):
            if required not in given:
                raise InvalidRequest(f"user/create needs {required}")
    if "name" in given:
        body["name"] = _text("name", given["name"], low=1 if create else 0)
    if "department" in given:
        ids = _department_ids("department", given["department"], most=MAX_MEMBER_DEPARTMENTS)
        if create and not ids:
            raise InvalidRequest("department must name at least one department")
        body["department"] = ids
    if "password" in given:
        secret = given["password"]
        text = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        if not isinstance(text, str) or not text:
            raise InvalidRequest("password must be a non-empty string")
        body["password"] = text
    if "position" in given:
        body["position"] = _text("position", given["position"], low=0)
    for key in ("mobile", "tel", "extid"):
        if key in given:
            if not isinstance(given[key], str):
                raise InvalidRequest(f"{key} must be a string")
            body[key] = given[key]
    if "gender" in given:
        gender = _small_int("gender", given["gender"], (Gender.MALE, Gender.FEMALE))
        body["gender"] = str(int(gender))
    if "slaves" in given:
        body["slaves"] = _addresses("slaves", given["slaves"], most=MAX_SLAVES)
    for key in ("cpwd_login", "enable"):
        if key in given:
            body[key] = _small_int(key, given[key], (0, 1))
    return body


def group_body(groupid: str, *, create: bool, **fields: Any) -> Body:
    """``group/create`` or ``group/update``: fields left ``None`` are not sent."""
    body: Body = {"groupid": check_userid("groupid", groupid)}
    given = {k: v for k, v in fields.items() if v is not None}
    if "groupname" in given:
        body["groupname"] = _text("groupname", given["groupname"], low=1)
    elif create:
        raise InvalidRequest("group/create needs groupname")
    if "allow_type" in given:
        body["allow_type"] = int(_small_int("allow_type", given["allow_type"], tuple(AllowType)))
    elif create:
        raise InvalidRequest("group/create needs allow_type")
    for key in ("userlist", "grouplist", "allow_userlist"):
        if key in given:
            body[key] = _addresses(key, given[key])
    if "department" in given:
        body["department"] = _department_ids("department", given["department"], most=10**6)
    if create and not any(body.get(k) for k in ("userlist", "grouplist", "department")):
        raise InvalidRequest("group/create needs members: userlist, grouplist or department")
    return body


def tag_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TAG_NAME:
        raise InvalidRequest(f"tagname must be 1-{MAX_TAG_NAME} characters")
    return value


def check_tagid(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**32:
        raise InvalidRequest(f"tagid must be a positive integer, got {value!r}")
    return value


def tag_members_body(tagid: int, userlist: Any, partylist: Any) -> Body:
    users = _addresses("userlist", userlist, most=MAX_TAG_USERS)
    parties = _department_ids("partylist", partylist, most=MAX_TAG_PARTIES)
    if not users and not parties:
        raise InvalidRequest("userlist and partylist must not both be empty")
    body: Body = {"tagid": check_tagid(tagid)}
    if users:
        body["userlist"] = users
    if parties:
        body["partylist"] = parties
    return body


def _date(param: str, value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise InvalidRequest(f"{param} must be a date YYYY-MM-DD, got {value!r}")


def date_range(begin: Any, end: Any) -> Body:
    first, last = _date("begin_date", begin), _date("end_date", end)
    if first > last:
        raise InvalidRequest("begin_date must not be after end_date")
    return {"begin_date": first.isoformat(), "end_date": last.isoformat()}


def option_types(types: Iterable[int]) -> list[int]:
    out = [_small_int("type", t, (1, 2, 3, 4)) for t in types]
    if not out:
        raise InvalidRequest("type must name at least one option")
    return out


def options_body(userid: str, options: Mapping[int, Any]) -> Body:
    """``useroption/update``: ``{type: value}``; values ``"0"``/``"1"`` (bools and 0/1 too)."""
    items = []
    for key, value in options.items():
        kind = _small_int("option type", key, (1, 2, 3))
        text = str(int(value)) if isinstance(value, (bool, int)) else value
        if text not in ("0", "1"):
            raise InvalidRequest(f"option {kind} must be '0' or '1', got {value!r}")
        items.append({"type": kind, "value": text})
    if not items:
        raise InvalidRequest("option must name at least one setting")
    return {"userid": check_userid("userid", userid), "option": items}
