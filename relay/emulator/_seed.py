"""Seeds: the directory an emulator starts from, read from JSON or built in.

A seed is plain, validated, frozen data (``Seed`` > ``CompanySeed`` > ``UserSeed`` /
``GroupSeed``). ``parse_seed`` checks a decoded JSON mapping and names the first problem
it finds with its location (``companies[0].users[2].alias: ...``); ``load_seed`` does
the same for a file; ``demo_seed`` is the built-in demo company. The names rules
(``normalize_email``, ``split_path``) live here too, because the state applies the same
rules to API and control requests.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._api2seed import Api2TenantSeed, demo_api2_tenant, parse_api2_tenant
from ._errors import EmulatorSeedError
from ._seedcheck import _email, _fail, _int, _keys, _str, _strs, is_email, normalize_email

__all__ = [
    "MAX_PARTY_DEPTH",
    "MAX_PARTY_NAME",
    "CompanySeed",
    "GroupSeed",
    "Seed",
    "UserSeed",
    "demo_seed",
    "is_email",
    "load_seed",
    "normalize_email",
    "parse_seed",
    "split_path",
    "tenant_key",
    "tenants_seed",
]

MAX_PARTY_DEPTH = 5
MAX_PARTY_NAME = 64
GROUP_STATUSES = ("all", "inner", "group", "list")


def split_path(path: str) -> tuple[str, ...] | str:
    """``"A/B"`` -> ``("A", "B")``; ``""`` -> ``()`` (the root). A string answer is the problem."""
    path = path.strip().strip("/")
    if not path:
        return ()
    parts = tuple(p.strip() for p in path.split("/"))
    if any(not p for p in parts):
        return f"department path {path!r} has an empty level"
    if len(parts) > MAX_PARTY_DEPTH:
        return f"department path {path!r} is deeper than {MAX_PARTY_DEPTH} levels"
    if any(len(p) > MAX_PARTY_NAME for p in parts):
        return f"department path {path!r} has a level longer than {MAX_PARTY_NAME} characters"
    return parts


@dataclass(frozen=True, slots=True)
class UserSeed:
    alias: str
    name: str = ""
    gender: int = 0
    position: str = ""
    tel: str = ""
    mobile: str = ""
    extid: str = ""
    parties: tuple[str, ...] = ()
    slaves: tuple[str, ...] = ()
    open_type: int = 1
    unread: int = 0


@dataclass(frozen=True, slots=True)
class GroupSeed:
    alias: str
    name: str
    status: str = "all"
    members: tuple[str, ...] = ()
    allow_list: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CompanySeed:
    admin: str
    key: str = field(repr=False)
    domains: tuple[str, ...]
    parties: tuple[str, ...] = ()
    users: tuple[UserSeed, ...] = ()
    groups: tuple[GroupSeed, ...] = ()
    name: str = ""


@dataclass(frozen=True, slots=True)
class Seed:
    companies: tuple[CompanySeed, ...] = ()
    api2: tuple[Api2TenantSeed, ...] = ()  # second-API tenants (``_api2seed``)


# -- parsing -------------------------------------------------------------------------------

_USER_KEYS = (
    "alias", "name", "gender", "position", "tel", "mobile", "extid",
    "parties", "slaves", "open_type", "unread", "password",
)  # fmt: skip
_COMPANY_KEYS = ("admin", "key", "domains", "parties", "users", "groups", "name")
_GROUP_KEYS = ("alias", "name", "status", "members", "allow_list")


def _parse_user(obj: Any, where: str, domains: tuple[str, ...], parties: set[str]) -> UserSeed:
    _keys(obj, where, _USER_KEYS, ("alias",))
    alias = _email(_str(obj, "alias", where), f"{where}.alias", domains)
    slaves = tuple(
        _email(s, f"{where}.slaves[{i}]", domains)
        for i, s in enumerate(_strs(obj, "slaves", where))
    )
    if len(slaves) > 5:
        raise _fail(f"{where}.slaves", "at most 5 aliases per account")
    user_parties = []
    for i, p in enumerate(_strs(obj, "parties", where)):
        parts = split_path(p)
        if isinstance(parts, str):
            raise _fail(f"{where}.parties[{i}]", parts)
        if parts and "/".join(parts) not in parties:
            raise _fail(
                f"{where}.parties[{i}]", f"department {p!r} is not in the company's parties"
            )
        user_parties.append("/".join(parts))
    return UserSeed(
        alias=alias,
        name=_str(obj, "name", where) or alias.split("@", 1)[0],
        gender=_int(obj, "gender", where, 0, range(3)),
        position=_str(obj, "position", where),
        tel=_str(obj, "tel", where),
        mobile=_str(obj, "mobile", where),
        extid=_str(obj, "extid", where),
        parties=tuple(user_parties),
        slaves=slaves,
        open_type=_int(obj, "open_type", where, 1, range(1, 3)),
        unread=_int(obj, "unread", where, 0, range(2**31)),
    )


def _parse_group(obj: Any, where: str, domains: tuple[str, ...]) -> GroupSeed:
    _keys(obj, where, _GROUP_KEYS, ("alias",))
    status = _str(obj, "status", where, "all")
    if status not in GROUP_STATUSES:
        raise _fail(f"{where}.status", f"{status!r} is not one of {list(GROUP_STATUSES)}")
    members = _strs(obj, "members", where)
    allow = _strs(obj, "allow_list", where)
    return GroupSeed(
        alias=_email(_str(obj, "alias", where), f"{where}.alias", domains),
        name=_str(obj, "name", where),
        status=status,
        members=tuple(_email(m, f"{where}.members[{i}]") for i, m in enumerate(members)),
        allow_list=tuple(_email(m, f"{where}.allow_list[{i}]") for i, m in enumerate(allow)),
    )


def parse_company(obj: Any, where: str = "company") -> CompanySeed:
    """Validate one company mapping (the seed shape; also the control API's ``company``)."""
    _keys(obj, where, _COMPANY_KEYS, ("admin", "key", "domains"))
    domains = tuple(d.strip().lower() for d in _strs(obj, "domains", where))
    if not domains:
        raise _fail(f"{where}.domains", "at least one domain is needed")
    for i, d in enumerate(domains):
        if not is_email(f"x@{d}"):
            raise _fail(f"{where}.domains[{i}]", f"{d!r} is not a domain name")
    admin = _email(_str(obj, "admin", where), f"{where}.admin")
    key = _str(obj, "key", where)
    if not key:
        raise _fail(f"{where}.key", "the interface key must not be empty")
    parties: list[str] = []
    for i, p in enumerate(_strs(obj, "parties", where)):
        parts = split_path(p)
        if isinstance(parts, str):
            raise _fail(f"{where}.parties[{i}]", parts)
        for depth in range(1, len(parts) + 1):  # parents are created implicitly
            path = "/".join(parts[:depth])
            if path not in parties:
                parties.append(path)
    users_raw = obj.get("users", [])
    if not isinstance(users_raw, list):
        raise _fail(f"{where}.users", "expected a list")
    party_set = set(parties)
    users = tuple(
        _parse_user(u, f"{where}.users[{i}]", domains, party_set) for i, u in enumerate(users_raw)
    )
    taken: set[str] = set()
    for i, u in enumerate(users):
        for address in (u.alias, *u.slaves):
            if address in taken:
                raise _fail(f"{where}.users[{i}]", f"address {address!r} is used twice")
            taken.add(address)
    groups_raw = obj.get("groups", [])
    if not isinstance(groups_raw, list):
        raise _fail(f"{where}.groups", "expected a list")
    groups = tuple(
        _parse_group(g, f"{where}.groups[{i}]", domains) for i, g in enumerate(groups_raw)
    )
    for i, g in enumerate(groups):
        if g.alias in taken:
            raise _fail(f"{where}.groups[{i}].alias", f"address {g.alias!r} is already used")
        taken.add(g.alias)
    return CompanySeed(
        admin=admin,
        key=key,
        domains=domains,
        parties=tuple(parties),
        users=users,
        groups=groups,
        name=_str(obj, "name", where),
    )


def parse_seed(data: Any) -> Seed:
    """Validate a decoded seed document ``{"companies": [...], "api2": [...]}`` (each
    list optional; ``api2``: second-API tenants, see ``_api2seed``)."""
    _keys(data, "seed", ("companies", "api2"), ())
    if "companies" not in data and "api2" not in data:
        raise _fail("seed", "missing required key(s) ['companies'] (or 'api2')")
    companies_raw = data.get("companies", [])
    if not isinstance(companies_raw, list):
        raise _fail("companies", "expected a list")
    companies = tuple(parse_company(c, f"companies[{i}]") for i, c in enumerate(companies_raw))
    admins: set[str] = set()
    domains: set[str] = set()
    for i, c in enumerate(companies):
        if c.admin in admins:
            raise _fail(f"companies[{i}].admin", f"{c.admin!r} appears twice")
        admins.add(c.admin)
        for d in c.domains:
            if d in domains:
                raise _fail(f"companies[{i}].domains", f"domain {d!r} belongs to two companies")
            domains.add(d)
    api2_raw = data.get("api2", [])
    if not isinstance(api2_raw, list):
        raise _fail("api2", "expected a list")
    api2 = tuple(parse_api2_tenant(t, f"api2[{i}]") for i, t in enumerate(api2_raw))
    corpids: set[str] = set()
    for i, t in enumerate(api2):
        if t.corpid in corpids:
            raise _fail(f"api2[{i}].corpid", f"{t.corpid!r} appears twice")
        corpids.add(t.corpid)
        for d in t.domains:
            if d in domains:
                raise _fail(f"api2[{i}].domains", f"domain {d!r} belongs to two tenants")
            domains.add(d)
    return Seed(companies=companies, api2=api2)


def load_seed(path: str | os.PathLike[str]) -> Seed:
    """Read and validate a JSON seed file; raise ``EmulatorSeedError`` naming the problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise EmulatorSeedError(f"cannot read seed file {str(p)!r}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise EmulatorSeedError(f"seed file {str(p)!r} is not UTF-8") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EmulatorSeedError(
            f"seed file {str(p)!r} is not valid JSON: {exc.msg}"
            f" (line {exc.lineno}, column {exc.colno})"
        ) from exc
    try:
        return parse_seed(data)
    except EmulatorSeedError as exc:
        raise EmulatorSeedError(f"seed file {str(p)!r}: {exc}") from None


_DEMO_USERS = (
    ("zhangwei", "张伟", 1, "销售总监", ("Sales",)),
    ("lina", "李娜", 2, "销售经理", ("Sales/East",)),
    ("wangfang", "王芳", 2, "销售代表", ("Sales/East",)),
    ("liuyang", "刘洋", 1, "销售代表", ("Sales",)),
    ("chenjing", "陈静", 2, "客户经理", ("Sales/East",)),
    ("alice", "Alice Walker", 2, "Engineering Manager", ("Engineering",)),
    ("bob", "Bob Smith", 1, "Engineer", ("Engineering/Platform",)),
    ("carol", "Carol Jones", 2, "Engineer", ("Engineering/Platform",)),
    ("dave", "Dave Brown", 1, "SRE", ("Engineering/Platform",)),
    ("yangli", "杨丽", 2, "工程师", ("Engineering",)),
    ("zhaolei", "赵磊", 1, "工程师", ("Engineering", "Engineering/Platform")),
    ("huangmin", "黄敏", 2, "会计", ("Finance",)),
    ("zhoujie", "周杰", 1, "财务经理", ("Finance",)),
    ("eve", "Eve Davis", 2, "Controller", ("Finance",)),
    ("frank", "Frank Miller", 1, "Account Executive", ("Sales",)),
    ("grace", "Grace Lee", 2, "Designer", ()),
    ("wuqiang", "吴强", 1, "总经理", ()),
    ("xuting", "徐婷", 2, "行政", ()),
    ("henry", "Henry Wilson", 1, "Intern", ("Engineering",)),
    ("sunhao", "孙浩", 1, "实施顾问", ("Sales/East", "Engineering")),
)


def demo_seed() -> Seed:
    """The built-in demo company: ``admin@example.com`` / ``exmail-demo-key`` on example.com,
    and the second API's demo tenant (``_api2seed.demo_api2_tenant``) on example.org."""
    users = tuple(
        UserSeed(
            alias=f"{alias}@example.com",
            name=name,
            gender=gender,
            position=position,
            tel=f"0755-8601{i:04d}",
            mobile=f"1380000{i:04d}",
            extid=str(1000 + i),
            parties=parties,
            slaves=(f"{alias}.alias@example.com",) if i % 5 == 0 else (),
            unread=i % 4,
        )
        for i, (alias, name, gender, position, parties) in enumerate(_DEMO_USERS)
    )
    company = CompanySeed(
        admin="admin@example.com",
        key="exmail-demo-key",
        domains=("example.com",),
        parties=("Sales", "Sales/East", "Engineering", "Engineering/Platform", "Finance"),
        users=users,
        groups=(
            GroupSeed(
                alias="all@example.com",
                name="Everyone",
                status="inner",
                members=tuple(u.alias for u in users),
            ),
        ),
        name="Example Co.",
    )
    return Seed(companies=(company,), api2=(demo_api2_tenant(),))


def tenant_key(prefix: str, number: int) -> str:
    """The interface key ``tenants_seed`` gives company ``number``: ``<prefix><NN>-key``."""
    return f"{prefix}{number:02d}-key"


def tenants_seed(
    count: int, *, users: int = 3, prefix: str = "t", first: int = 1
) -> tuple[CompanySeed, ...]:
    """``count`` small companies for multi-tenant tests, numbered from ``first``: company
    ``n`` has admin ``admin@<prefix><NN>.test``, key :func:`tenant_key` and accounts
    ``user1@<prefix><NN>.test`` .. ``user<users>@...`` (``NN``: ``n`` on two digits at least).
    ``Seed(companies=tenants_seed(12))`` is a seed; the control API's ``companies`` adds them
    to a running emulator."""
    if count < 1 or users < 0 or first < 0:
        raise EmulatorSeedError("count must be >= 1, users and first >= 0")
    if not is_email(f"admin@{prefix}{first:02d}.test"):
        raise EmulatorSeedError(f"prefix {prefix!r} does not make a domain name")
    out = []
    for n in range(first, first + count):
        domain = f"{prefix}{n:02d}.test"
        out.append(
            CompanySeed(
                admin=f"admin@{domain}",
                key=tenant_key(prefix, n),
                domains=(domain,),
                name=f"Tenant {prefix}{n:02d}",
                users=tuple(
                    UserSeed(alias=f"user{j}@{domain}", name=f"User {j}")
                    for j in range(1, users + 1)
                ),
            )
        )
    return tuple(out)
