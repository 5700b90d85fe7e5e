"""``POST /v1/tenants/{tenant}/openapi/{operation}`` for tenants of the second API.

The catalogue of an ``api = "api2"`` tenant is the second API's (``relay.exmail2``,
notes §4-§8): every operation of :data:`relay.exmail2.OPERATIONS`, each with a body
model here that names the API's own parameters (``userid``, ``department_id``,
``begin_date``...) and states the limits the notes give (at most 20 departments per
member, 5 aliases, 20 addresses per ``user/batchcheck``, 1000 users per tag...). The
models are the body schemas of ``/v1/openapi.json``, and the very validation the
gateway runs: what breaks one is refused 400 and nothing is sent; unknown keys are
refused.

A JSON body is validated *strictly* (a string is not a number, a lone string is not an
array; ``2.0`` is the integer 2, as in JSON Schema); a urlencoded form leniently (every
value is text; a repeated key, or a single one for an array field, is a list). GET
operations send the values in the query, POST ones as the JSON body (``relay.exmail2``
decides which).

Scopes: reads (``department/list``, ``user/get``, ``log/*``, ``useroption/get``...) need
``read``; ``service/get_login_url`` (a login URL) needs ``sso``; every change ``write``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from relay.exmail import InvalidRequest
from relay.exmail import validation as v
from relay.exmail2 import OPERATIONS as API2
from relay.gateway.problems import Problem

__all__ = ["OPERATIONS2", "Operation2", "Prepared", "fits", "prepare"]

Id = Annotated[int, Field(ge=1, le=2**64 - 1, description="a 64-bit id (1: the root)")]
Name = Annotated[str, Field(min_length=1, max_length=64)]
Text = Annotated[str, Field(max_length=64)]
Day = Annotated[str, Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", description="YYYY-MM-DD")]
Flag = Annotated[int, Field(ge=0, le=1)]


# Ranges, not enums: a form's "1" is taken as 1 (a Literal would refuse the text).
Gender = Annotated[int, Field(ge=1, le=2, description="1 male, 2 female")]
AllowType = Annotated[int, Field(ge=0, le=3, description="0 company, 1 anyone, 2 group, 3 list")]
MailType = Annotated[int, Field(ge=0, le=2, description="0 both ways, 1 sent, 2 received")]
OptionType = Annotated[int, Field(ge=1, le=4)]
SettableOption = Annotated[int, Field(ge=1, le=3)]
Emails = list[v.EmailAddress]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DepartmentCreate2(_Body):
    name: Name
    parentid: Id
    order: Annotated[int, Field(ge=0, lt=2**32)] | None = None


class DepartmentUpdate2(_Body):
    id: Id
    name: Name | None = None
    parentid: Id | None = None
    order: Annotated[int, Field(ge=0, lt=2**32)] | None = None


class DepartmentId2(_Body):
    id: Id


class DepartmentList2(_Body):
    """The department and every descendant (absent: the root's tree)."""

    id: Id | None = None


class DepartmentSearch2(_Body):
    name: Name
    fuzzy: Flag | None = None


class UserCreate2(_Body):
    userid: v.EmailAddress
    name: Name
    department: list[Id] = Field(min_length=1, max_length=20)
    password: str = Field(min_length=1, max_length=64)
    position: Text | None = None
    mobile: Text | None = None
    tel: Text | None = None
    extid: Text | None = None
    gender: Gender | None = None
    slaves: Emails | None = Field(default=None, max_length=5)
    cpwd_login: Flag | None = None


class UserUpdate2(_Body):
    userid: v.EmailAddress
    name: Text | None = None
    department: list[Id] | None = Field(default=None, max_length=20)
    password: str | None = Field(default=None, min_length=1, max_length=64)
    position: Text | None = None
    mobile: Text | None = None
    tel: Text | None = None
    extid: Text | None = None
    gender: Gender | None = None
    slaves: Emails | None = Field(default=None, max_length=5)
    cpwd_login: Flag | None = None
    enable: Flag | None = None


class UserId2(_Body):
    userid: v.EmailAddress


class UserList2(_Body):
    """Members of ``department_id`` (absent: the root), with ``fetch_child`` 1 recursively."""

    department_id: Id | None = None
    fetch_child: Flag | None = None


class BatchCheck2(_Body):
    userlist: Emails = Field(min_length=1, max_length=20)


class GroupCreate2(_Body):
    groupid: v.EmailAddress
    groupname: Name
    allow_type: AllowType
    userlist: Emails | None = None
    grouplist: Emails | None = None
    department: list[Id] | None = None
    allow_userlist: Emails | None = None


class GroupUpdate2(_Body):
    groupid: v.EmailAddress
    groupname: Name | None = None
    allow_type: AllowType | None = None
    userlist: Emails | None = None
    grouplist: Emails | None = None
    department: list[Id] | None = None
    allow_userlist: Emails | None = None


class GroupId2(_Body):
    groupid: v.EmailAddress


TagId = Annotated[int, Field(ge=1, lt=2**32)]


class TagCreate2(_Body):
    tagname: Annotated[str, Field(min_length=1, max_length=32)]
    tagid: TagId | None = None


class TagUpdate2(_Body):
    tagid: TagId
    tagname: Annotated[str, Field(min_length=1, max_length=32)]


class TagId2(_Body):
    tagid: TagId


class TagUsers2(_Body):
    tagid: TagId
    userlist: Emails | None = Field(default=None, max_length=1000)
    partylist: list[Id] | None = Field(default=None, max_length=100)


class NoBody2(_Body):
    """No parameters."""


class NewCount2(_Body):
    userid: v.EmailAddress
    begin_date: Day | None = None
    end_date: Day | None = None


class MailStatus2(_Body):
    domain: Annotated[str, Field(min_length=1, max_length=253)]
    begin_date: Day
    end_date: Day


class MailLog2(_Body):
    begin_date: Day
    end_date: Day
    mailtype: MailType | None = None
    userid: v.EmailAddress | None = None
    subject: Annotated[str, Field(max_length=256)] | None = None


class LoginLog2(_Body):
    userid: v.EmailAddress
    begin_date: Day
    end_date: Day


class Dates2(_Body):
    begin_date: Day
    end_date: Day


class OperationLog2(_Body):
    type: Annotated[int, Field(ge=0, le=10)]
    begin_date: Day
    end_date: Day


class OptionGet2(_Body):
    userid: v.EmailAddress
    type: list[OptionType] = Field(min_length=1, max_length=4)


class OptionValue2(_Body):
    type: SettableOption
    value: Literal["0", "1"]


class OptionUpdate2(_Body):
    userid: v.EmailAddress
    option: list[OptionValue2] = Field(min_length=1, max_length=3)


_BODIES: dict[str, type[_Body]] = {
    "department/create": DepartmentCreate2,
    "department/update": DepartmentUpdate2,
    "department/delete": DepartmentId2,
    "department/list": DepartmentList2,
    "department/search": DepartmentSearch2,
    "user/create": UserCreate2,
    "user/update": UserUpdate2,
    "user/delete": UserId2,
    "user/get": UserId2,
    "user/simplelist": UserList2,
    "user/list": UserList2,
    "user/batchcheck": BatchCheck2,
    "group/create": GroupCreate2,
    "group/update": GroupUpdate2,
    "group/delete": GroupId2,
    "group/get": GroupId2,
    "tag/create": TagCreate2,
    "tag/update": TagUpdate2,
    "tag/delete": TagId2,
    "tag/get": TagId2,
    "tag/addtagusers": TagUsers2,
    "tag/deltagusers": TagUsers2,
    "tag/list": NoBody2,
    "service/get_login_url": UserId2,
    "mail/newcount": NewCount2,
    "log/mailstatus": MailStatus2,
    "log/mail": MailLog2,
    "log/login": LoginLog2,
    "log/batchjob": Dates2,
    "log/operation": OperationLog2,
    "useroption/get": OptionGet2,
    "useroption/update": OptionUpdate2,
}


@dataclass(frozen=True, slots=True)
class Operation2:
    name: str
    scope: str
    body: type[BaseModel]
    method: Literal["GET", "POST"]
    form: bool = True
    """A urlencoded form may carry the body (not: a list of objects, useroption/update)."""


def _scope(name: str) -> str:
    if name == "service/get_login_url":
        return "sso"
    return "read" if API2[name].read else "write"


OPERATIONS2: dict[str, Operation2] = {
    name: Operation2(name, _scope(name), body, API2[name].method, name != "useroption/update")
    for name, body in _BODIES.items()
}
assert set(OPERATIONS2) == set(API2), "every operation of relay.exmail2 has a body here"


@dataclass(frozen=True, slots=True)
class Prepared:
    """A validated call: the query of a GET, or the JSON body of a POST."""

    query: dict[str, str | int]
    body: dict[str, Any] | None


def _whole(value: Any) -> Any:
    """JSON's ``2.0`` is the integer 2 (as JSON Schema has it): integral floats become
    ints, in lists and objects too; strict validation then takes them where ints go."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_whole(item) for item in value]
    if isinstance(value, dict):
        return {k: _whole(v) for k, v in value.items()}
    return value


@functools.cache
def _list_fields(body: type[BaseModel]) -> frozenset[str]:
    schema = body.model_json_schema()
    out = set()
    for name, prop in schema["properties"].items():
        branches = prop.get("anyOf", [prop])
        if any(b.get("type") == "array" for b in branches):
            out.add(name)
    return frozenset(out)


def _error(exc: ValidationError, operation: Operation2) -> InvalidRequest:
    error = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in error["loc"]) or operation.name
    return InvalidRequest(f"{operation.name}: {where}: {error['msg']}")


def prepare(operation: Operation2, data: Mapping[str, Any], *, form: bool) -> Prepared:
    """The call ``data`` asks for (a JSON object, or a form's values); InvalidRequest
    (400) when it breaks the operation's schema."""
    values = dict(data) if form else {k: _whole(v) for k, v in data.items()}
    if form and not operation.form:
        raise Problem(
            415, "unsupported-media-type", "Unsupported media type",
            f"{operation.name} takes a JSON body (a form cannot carry its list of objects)",
        )  # fmt: skip
    if form:  # text only: arrays from repeated keys, numbers from digits
        for key in _list_fields(operation.body) & values.keys():
            if not isinstance(values[key], list):
                values[key] = [values[key]]
    try:
        model = operation.body.model_validate(values, strict=not form)
    except ValidationError as exc:
        raise _error(exc, operation) from None
    dumped = model.model_dump(mode="json", exclude_none=True)
    if operation.method == "GET":
        return Prepared({k: v for k, v in dumped.items() if isinstance(v, str | int)}, None)
    return Prepared({}, dumped)


def fits(operation: Operation2, data: Mapping[str, Any], *, form: bool) -> bool:
    """Whether ``data`` is a valid body of ``operation`` (nothing raised)."""
    try:
        prepare(operation, data, form=form)
    except (InvalidRequest, Problem):
        return False
    return True
