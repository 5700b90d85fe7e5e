"""The second API's directory rules: departments and members. No I/O.

Each function takes a ``Tenant2`` and the request's parameters (a dict: the query and
the JSON body merged, see ``_api2server``), checks the documented rules (notes §4),
applies the change and returns the answer's payload (``errcode``/``errmsg`` are added by
the caller). Refusals are ``Api2Error``s; the codes are WeCom's (listed in
``docs/emulator.md``). Each change appends an entry to the tenant's operation log
(``log/operation`` types 19-34). Mail groups and tags are in ``_api2groups``.
"""

from __future__ import annotations

from typing import Any

from ._api2model import ROOT_ID, Department2, Member2, Tenant2
from ._errors import Api2Error
from ._seed import is_email

__all__ = [
    "address",
    "bad",
    "department_create",
    "department_delete",
    "department_list",
    "department_search",
    "department_update",
    "ids",
    "integer",
    "log_operation",
    "strings",
    "text",
    "user_batchcheck",
    "user_create",
    "user_delete",
    "user_get",
    "user_list",
    "user_update",
]

Params = dict[str, Any]
MAX_DEPTH = 15
_FORBIDDEN = set('\\:*?"<>|')


def bad(detail: str) -> Api2Error:
    return Api2Error(40035, f"invalid parameter: {detail}")


def integer(params: Params, name: str, *, default: int | None = None) -> int:
    """A number or a numeric string (the server is as tolerant as its clients must be)."""
    value = params.get(name)
    if value is None or value == "":
        if default is None:
            raise bad(f"{name} is required")
        return default
    if isinstance(value, str) and value.strip().removeprefix("-").isdigit():
        return int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(f"{name} must be an integer")
    return value


def text(params: Params, name: str, *, required: bool = True) -> str:
    value = params.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise bad(f"{name} is required")
    return value


def strings(params: Params, name: str) -> list[str]:
    value = params.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad(f"{name} must be a list of strings")
    return [v.strip().lower() for v in value]


def ids(params: Params, name: str) -> list[int]:
    value = params.get(name, [])
    if not isinstance(value, list):
        raise bad(f"{name} must be a list of ids")
    return [integer({"v": v}, "v") for v in value]


def log_operation(tenant: Tenant2, clock: float, kind: int, operand: str) -> None:
    entry = {"time": int(clock), "operator": "api", "type": kind, "operand": operand, "remark": ""}
    tenant.operations.append(entry)


# -- departments --------------------------------------------------------------------------


def _name(value: str) -> str:
    if not 1 <= len(value.encode("utf-8")) <= 64:
        raise Api2Error(60001, "department name length invalid")
    if _FORBIDDEN.intersection(value) or not value.strip():
        raise Api2Error(60009, "department name contains illegal characters")
    return value


def _order(params: Params) -> int:
    order = integer(params, "order", default=0)
    # "1-10000 are reserved; a reserved value is forcibly reset to 0" (notes §4.1).
    return 0 if 1 <= order <= 10000 else order


def _check_sibling(tenant: Tenant2, parentid: int, name: str, exclude: int = 0) -> None:
    if any(d.name == name and d.id != exclude for d in tenant.children(parentid)):
        raise Api2Error(60008, "department name already exists")


def _depth(tenant: Tenant2, ident: int) -> int:
    depth, current = 0, tenant.departments.get(ident)
    while current is not None and current.id != ROOT_ID:
        depth += 1
        current = tenant.departments.get(current.parentid)
    return depth


def new_department(tenant: Tenant2, name: str, parentid: int, order: int = 0) -> Department2:
    ident = tenant.next_department
    tenant.next_department += 1_000_003  # a prime step: ids look unrelated, stay exact
    department = Department2(ident, name, parentid, order)
    tenant.departments[ident] = department
    return department


def department_create(tenant: Tenant2, params: Params, clock: float) -> Params:
    name = _name(text(params, "name"))
    parentid = integer(params, "parentid", default=ROOT_ID)
    if parentid not in tenant.departments:
        raise Api2Error(60004, "parent department not found")
    if _depth(tenant, parentid) + 1 > MAX_DEPTH:
        raise Api2Error(60002, "department depth limit exceeded")
    _check_sibling(tenant, parentid, name)
    department = new_department(tenant, name, parentid, _order(params))
    log_operation(tenant, clock, 28, tenant.path(department.id))
    return {"id": department.id}


def department_update(tenant: Tenant2, params: Params, clock: float) -> Params:
    department = tenant.department(integer(params, "id"))
    name = _name(text(params, "name")) if params.get("name") is not None else department.name
    parentid = department.parentid
    if params.get("parentid") is not None:
        if department.id == ROOT_ID:
            raise bad("the root department cannot move")
        parentid = integer(params, "parentid")
        if parentid not in tenant.departments:
            raise Api2Error(60004, "parent department not found")
        if any(d.id == parentid for _, d in tenant.subtree(department.id)):
            raise Api2Error(60010, "department loop")
    if department.id != ROOT_ID:
        _check_sibling(tenant, parentid, name, exclude=department.id)
    moved = parentid != department.parentid
    department.name, department.parentid = name, parentid
    if params.get("order") is not None:
        department.order = _order(params)
    log_operation(tenant, clock, 31 if moved else 30, tenant.path(department.id))
    return {}


def department_delete(tenant: Tenant2, params: Params, clock: float) -> Params:
    department = tenant.department(integer(params, "id"))
    if department.id == ROOT_ID:
        raise Api2Error(60007, "cannot delete root department")
    if tenant.children(department.id):
        raise Api2Error(60006, "department has sub-departments")
    if any(department.id in m.department for m in tenant.members.values()):
        raise Api2Error(60005, "department has members")
    path = tenant.path(department.id)
    del tenant.departments[department.id]
    log_operation(tenant, clock, 29, path)
    return {}


def _department_json(d: Department2) -> Params:
    return {"id": d.id, "name": d.name, "parentid": d.parentid, "order": d.order}


def department_list(tenant: Tenant2, params: Params) -> Params:
    """The department and every descendant, by ``(depth, order)`` (notes §4.1; §11 q6)."""
    ident = integer(params, "id", default=ROOT_ID)
    return {"department": [_department_json(d) for _, d in tenant.subtree(ident)]}


def department_search(tenant: Tenant2, params: Params) -> Params:
    name = _name(text(params, "name"))
    fuzzy = integer(params, "fuzzy", default=0)
    found = [
        d
        for d in tenant.departments.values()
        if d.id != ROOT_ID and (name in d.name if fuzzy else d.name == name)
    ]
    found.sort(key=lambda d: (d.order, d.id))
    out = []
    for d in found:
        entry = _department_json(d)
        entry["parentid"] = 0 if d.parentid == ROOT_ID else d.parentid  # the doc's rule
        entry["path"] = tenant.path(d.id)
        out.append(entry)
    return {"department": out}


# -- members ------------------------------------------------------------------------------


def address(tenant: Tenant2, value: str, *, code: int = 60105) -> str:
    address = value.strip().lower()
    if not is_email(address) or not tenant.owns(address):
        raise Api2Error(code, "email invalid" if code == 60105 else "invalid userid")
    return address


def _member_fields(tenant: Tenant2, member: Member2, params: Params, *, create: bool) -> None:
    if "name" in params or create:
        name = text(params, "name", required=create)
        if not (1 if create else 0) <= len(name.encode("utf-8")) <= 64:
            raise Api2Error(60112, "member name invalid")
        member.name = name
    if "department" in params or create:
        departments = ids(params, "department")
        if create and not departments:
            raise bad("department is required")
        if len(departments) > 20:
            raise Api2Error(60110, "too many departments for one user")
        for ident in departments:
            tenant.department(ident)
        member.department = list(dict.fromkeys(departments))
    for key in ("position", "mobile", "tel", "extid"):
        if key in params:
            value = params[key]
            if isinstance(value, int) and not isinstance(value, bool):
                value = str(value)
            if not isinstance(value, str):
                raise bad(f"{key} must be a string")
            if key == "position" and len(value.encode("utf-8")) > 64:
                raise bad("position is at most 64 bytes")
            setattr(member, key, value)
    if member.mobile and any(
        m.mobile == member.mobile and m is not member for m in tenant.members.values()
    ):
        raise Api2Error(60104, "mobile already exists")
    if "gender" in params:
        gender = integer(params, "gender")
        if gender not in (0, 1, 2):
            raise Api2Error(60114, "gender invalid")
        member.gender = gender
    for key in ("enable", "cpwd_login"):
        if key in params:
            value = integer(params, key)
            if value not in (0, 1):
                raise bad(f"{key} must be 0 or 1")
            setattr(member, key, value)
    if "password" in params or create:
        member.password = text(params, "password")
    if "slaves" in params:
        slaves = [address(tenant, s) for s in strings(params, "slaves")]
        if len(slaves) > 5:
            raise bad("at most 5 slaves")
        for slave in slaves:
            owner = tenant.slaves.get(slave)
            if (
                slave in tenant.members
                or slave in tenant.groups
                or owner not in (None, member.userid)
            ):
                raise Api2Error(60106, "email already exists")
        for old in member.slaves:
            tenant.slaves.pop(old, None)
        member.slaves = slaves
        for slave in slaves:
            tenant.slaves[slave] = member.userid


def user_create(tenant: Tenant2, params: Params, clock: float) -> Params:
    userid = address(tenant, text(params, "userid"), code=40003)
    if tenant.kind_of(userid):
        raise Api2Error(60102, "userid already exists")
    member = Member2(userid=userid, name="")
    _member_fields(tenant, member, params, create=True)
    tenant.members[userid] = member
    log_operation(tenant, clock, 19, userid)
    return {}


def user_update(tenant: Tenant2, params: Params, clock: float) -> Params:
    member = tenant.member(text(params, "userid"))
    was_enabled = member.enable
    _member_fields(tenant, member, {k: v for k, v in params.items() if k != "userid"}, create=False)
    kind = 23 if member.enable == was_enabled else (21 if member.enable else 22)
    log_operation(tenant, clock, kind, member.userid)
    return {}


def user_delete(tenant: Tenant2, params: Params, clock: float) -> Params:
    member = tenant.member(text(params, "userid"))
    for slave in member.slaves:
        tenant.slaves.pop(slave, None)
    del tenant.members[member.userid]
    for group in tenant.groups.values():
        group.userlist = [u for u in group.userlist if u != member.userid]
    for tag in tenant.tags.values():
        tag.userlist = [u for u in tag.userlist if u != member.userid]
    log_operation(tenant, clock, 20, member.userid)
    return {}


def user_get(tenant: Tenant2, params: Params) -> Params:
    return tenant.member(text(params, "userid")).profile()


def user_list(tenant: Tenant2, params: Params, *, simple: bool) -> Params:
    ident = integer(params, "department_id", default=ROOT_ID)
    if integer(params, "fetch_child", default=0):
        scope = {d.id for _, d in tenant.subtree(ident)}
    else:
        scope = {tenant.department(ident).id}
    members = [
        m
        for m in tenant.members.values()
        if scope.intersection(m.department) or (ROOT_ID in scope and not m.department)
    ]
    if simple:
        rows = [{"userid": m.userid, "name": m.name, "department": m.department} for m in members]
        return {"userlist": rows}
    return {"userlist": [m.profile() for m in members]}


def user_batchcheck(tenant: Tenant2, params: Params) -> Params:
    names = strings(params, "userlist")
    if len(names) > 20:
        raise bad("at most 20 addresses in userlist")
    out = []
    for name in names:
        kind = tenant.kind_of(name) if is_email(name) and tenant.owns(name) else -1
        out.append({"user": name, "type": kind})
    return {"list": out}
