"""Seeds of second-API tenants: the ``api2`` list of a seed file, and the demo tenant.

A second-API tenant is a company (``corpid``) with one secret per application
(``directory``, ``sso``, ``newmail``, ``logs``, ``settings``; notes §2), its mail domains,
departments given as ``/``-separated name paths (ids are issued by the emulator, above
2**53, unless the seed names one), members, and mail groups. ``parse_api2_tenant``
checks one mapping and names the first problem with its place
(``api2[0].users[2].userid: ...``), as ``_seed`` does for the first API's companies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from relay.core.callback_xml import DEFAULT_ENVELOPE
from relay.core.wecom_crypto import valid_encoding_aes_key, valid_token

from ._seedcheck import _email, _fail, _int, _keys, _str, _strs, is_email

__all__ = [
    "ANSWER_CHECKS",
    "API2_APPS",
    "ENVELOPES",
    "Api2CallbackSeed",
    "Api2DepartmentSeed",
    "Api2GroupSeed",
    "Api2TenantSeed",
    "Api2UserSeed",
    "demo_api2_tenant",
    "parse_api2_tenant",
    "parse_callback",
]

API2_APPS = ("directory", "sso", "newmail", "logs", "settings")
MAX_DEPARTMENT_DEPTH = 15
MAX_ID = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Api2DepartmentSeed:
    path: str
    id: int | None = None
    order: int = 0


@dataclass(frozen=True, slots=True)
class Api2UserSeed:
    userid: str
    name: str = ""
    departments: tuple[str, ...] = ()  # paths; empty: the root
    position: str = ""
    mobile: str = ""
    tel: str = ""
    extid: str = ""
    gender: int = 0
    enable: int = 1
    slaves: tuple[str, ...] = ()
    unread: int = 0


@dataclass(frozen=True, slots=True)
class Api2GroupSeed:
    groupid: str
    groupname: str = ""
    allow_type: int = 0
    userlist: tuple[str, ...] = ()


ENVELOPES: dict[str, str] = {
    # The notes' default (§9.3): CorpID, AgentID, Encrypt (PYCB's three CDATA sections).
    "corpid_agentid": DEFAULT_ENVELOPE,
    # WeCom's own envelope, which O2 says Exmail does not send (§9.3, §11 q1).
    "wecom": "<xml><ToUserName><![CDATA[{corpid}]]></ToUserName>"
    "<AgentID><![CDATA[{agentid}]]></AgentID><Encrypt><![CDATA[{msg_encrypt}]]></Encrypt></xml>",
    # The least a receiver may rely on: Encrypt alone.
    "encrypt_only": "<xml><Encrypt><![CDATA[{msg_encrypt}]]></Encrypt></xml>",
}
"""Named readings of the callback POST envelope; a seed may also give its own template."""
ANSWER_CHECKS = ("status", "empty_or_success")


@dataclass(frozen=True, slots=True)
class Api2CallbackSeed:
    """A tenant's new-mail callback as saved in the admin console (URL, Token,
    EncodingAESKey), and how the emulator's sender behaves (the notes' open parts:
    envelope §9.3/§11 q1, answer check, timeout, attempts and delay §9.7/§11 q2).
    ``lose_answers`` is a fault: the first N answers of each delivery are read and then
    discarded, as if the connection dropped after the receiver had answered."""

    url: str
    token: str = field(repr=False)
    encoding_aes_key: str = field(repr=False)
    agentid: str = ""
    envelope: str = "corpid_agentid"
    answer: str = "status"
    timeout: float = 5.0
    attempts: int = 3
    retry_delay: float = 0.0
    lose_answers: int = 0

    @property
    def template(self) -> str:
        return ENVELOPES.get(self.envelope, self.envelope)

    def describe(self) -> dict[str, Any]:
        """Everything but the Token and the key (the control API's answers)."""
        return {
            "url": self.url,
            "agentid": self.agentid,
            "envelope": self.envelope,
            "answer": self.answer,
            "timeout": self.timeout,
            "attempts": self.attempts,
            "retry_delay": self.retry_delay,
            "lose_answers": self.lose_answers,
        }


_CALLBACK_KEYS = (
    "url", "token", "encoding_aes_key", "agentid", "envelope", "answer",
    "timeout", "attempts", "retry_delay", "lose_answers",
)  # fmt: skip


def _seconds(obj: Mapping[str, Any], key: str, where: str, default: float, low: float) -> float:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= 600:
        raise _fail(f"{where}.{key}", f"expected a number of seconds in [{low}, 600]")
    return float(value)


def parse_callback(obj: Any, where: str = "callback") -> Api2CallbackSeed:
    """Validate a callback configuration (a seed tenant's ``callback``; also the body of
    ``POST /_emulator/api2/callback`` without its ``corpid``). Values never appear in
    the messages, only their place."""
    _keys(obj, where, _CALLBACK_KEYS, ("url", "token", "encoding_aes_key"))
    url = _str(obj, "url", where).strip()
    if not url.startswith(("http://", "https://")) or any(c.isspace() for c in url):
        raise _fail(f"{where}.url", "expected an http:// or https:// URL")
    token = _str(obj, "token", where)
    if not valid_token(token):
        raise _fail(f"{where}.token", "expected 1 to 32 letters or digits")
    key = _str(obj, "encoding_aes_key", where)
    if not valid_encoding_aes_key(key):
        raise _fail(f"{where}.encoding_aes_key", "expected exactly 43 characters of A-Z, a-z, 0-9")
    envelope = _str(obj, "envelope", where, "corpid_agentid")
    if envelope not in ENVELOPES and "{msg_encrypt}" not in envelope:
        raise _fail(
            f"{where}.envelope",
            f"expected one of {sorted(ENVELOPES)} or a template holding {{msg_encrypt}}",
        )
    answer = _str(obj, "answer", where, "status")
    if answer not in ANSWER_CHECKS:
        raise _fail(f"{where}.answer", f"expected one of {list(ANSWER_CHECKS)}")
    return Api2CallbackSeed(
        url=url,
        token=token,
        encoding_aes_key=key,
        agentid=_str(obj, "agentid", where),
        envelope=envelope,
        answer=answer,
        timeout=_seconds(obj, "timeout", where, 5.0, 0.01),
        attempts=_int(obj, "attempts", where, 3, range(1, 11)),
        retry_delay=_seconds(obj, "retry_delay", where, 0.0, 0.0),
        lose_answers=_int(obj, "lose_answers", where, 0, range(11)),
    )


@dataclass(frozen=True, slots=True)
class Api2TenantSeed:
    corpid: str
    secrets: Mapping[str, str] = field(repr=False)
    domains: tuple[str, ...]
    name: str = ""
    departments: tuple[Api2DepartmentSeed, ...] = ()
    users: tuple[Api2UserSeed, ...] = ()
    groups: tuple[Api2GroupSeed, ...] = ()
    callback: Api2CallbackSeed | None = None  # saved without the GET handshake


_TENANT_KEYS = (
    "corpid", "secrets", "domains", "name", "departments", "users", "groups", "callback",
)  # fmt: skip
_USER_KEYS = (
    "userid", "name", "departments", "position", "mobile", "tel", "extid",
    "gender", "enable", "slaves", "unread", "password",
)  # fmt: skip
_GROUP_KEYS = ("groupid", "groupname", "allow_type", "userlist")


def _path(value: str, where: str) -> str:
    parts = [p.strip() for p in value.strip().strip("/").split("/")]
    if not all(parts):
        raise _fail(where, f"department path {value!r} has an empty level")
    if len(parts) > MAX_DEPARTMENT_DEPTH:
        raise _fail(where, f"department path {value!r} is deeper than {MAX_DEPARTMENT_DEPTH}")
    return "/".join(parts)


def _department(obj: Any, where: str) -> Api2DepartmentSeed:
    if isinstance(obj, str):
        return Api2DepartmentSeed(_path(obj, where))
    _keys(obj, where, ("path", "id", "order"), ("path",))
    ident = obj.get("id")
    if ident is not None and (
        isinstance(ident, bool) or not isinstance(ident, int) or not 1 < ident <= MAX_ID
    ):
        raise _fail(f"{where}.id", "expected an integer id in (1, 2**63)")
    return Api2DepartmentSeed(
        _path(_str(obj, "path", where), f"{where}.path"),
        ident,
        _int(obj, "order", where, 0, range(2**32)),
    )


def _user(obj: Any, where: str, domains: tuple[str, ...], paths: set[str]) -> Api2UserSeed:
    _keys(obj, where, _USER_KEYS, ("userid",))
    userid = _email(_str(obj, "userid", where), f"{where}.userid", domains)
    departments = []
    for i, p in enumerate(_strs(obj, "departments", where)):
        path = _path(p, f"{where}.departments[{i}]")
        if path not in paths:
            raise _fail(f"{where}.departments[{i}]", f"{p!r} is not in the tenant's departments")
        departments.append(path)
    slaves = tuple(
        _email(s, f"{where}.slaves[{i}]", domains)
        for i, s in enumerate(_strs(obj, "slaves", where))
    )
    if len(slaves) > 5:
        raise _fail(f"{where}.slaves", "at most 5 aliases per member")
    return Api2UserSeed(
        userid=userid,
        name=_str(obj, "name", where) or userid.split("@", 1)[0],
        departments=tuple(departments),
        position=_str(obj, "position", where),
        mobile=_str(obj, "mobile", where),
        tel=_str(obj, "tel", where),
        extid=_str(obj, "extid", where),
        gender=_int(obj, "gender", where, 0, range(3)),
        enable=_int(obj, "enable", where, 1, range(2)),
        slaves=slaves,
        unread=_int(obj, "unread", where, 0, range(2**31)),
    )


def _group(obj: Any, where: str, domains: tuple[str, ...]) -> Api2GroupSeed:
    _keys(obj, where, _GROUP_KEYS, ("groupid",))
    return Api2GroupSeed(
        groupid=_email(_str(obj, "groupid", where), f"{where}.groupid", domains),
        groupname=_str(obj, "groupname", where),
        allow_type=_int(obj, "allow_type", where, 0, range(4)),
        userlist=tuple(
            _email(u, f"{where}.userlist[{i}]") for i, u in enumerate(_strs(obj, "userlist", where))
        ),
    )


def _list(obj: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = obj.get(key, [])
    if not isinstance(value, list):
        raise _fail(f"{where}.{key}", "expected a list")
    return value


def parse_api2_tenant(obj: Any, where: str = "tenant") -> Api2TenantSeed:
    """Validate one second-API tenant mapping (the seed's ``api2`` entries; also the
    control API's ``POST /_emulator/api2/tenant``)."""
    _keys(obj, where, _TENANT_KEYS, ("corpid", "secrets", "domains"))
    corpid = _str(obj, "corpid", where).strip()
    if not corpid or not corpid.isprintable() or " " in corpid:
        raise _fail(f"{where}.corpid", "expected a non-empty id without spaces")
    raw = obj["secrets"]
    if not isinstance(raw, Mapping) or not raw:
        raise _fail(f"{where}.secrets", f"expected an object {{app: secret}}, apps {API2_APPS}")
    unknown = sorted(set(raw) - set(API2_APPS))
    if unknown:
        raise _fail(f"{where}.secrets", f"unknown app(s) {unknown}; apps: {list(API2_APPS)}")
    secrets = {app: _str(raw, app, f"{where}.secrets") for app in raw}
    if any(not s for s in secrets.values()):
        raise _fail(f"{where}.secrets", "a secret must not be empty")
    if len(set(secrets.values())) != len(secrets):
        raise _fail(f"{where}.secrets", "each app needs its own secret")
    domains = tuple(d.strip().lower() for d in _strs(obj, "domains", where))
    if not domains or not all(is_email(f"x@{d}") for d in domains):
        raise _fail(f"{where}.domains", "expected at least one domain name")
    departments: dict[str, Api2DepartmentSeed] = {}
    for i, d in enumerate(_list(obj, "departments", where)):
        seed = _department(d, f"{where}.departments[{i}]")
        parts = seed.path.split("/")
        for depth in range(1, len(parts)):  # parents are created implicitly
            departments.setdefault(
                "/".join(parts[:depth]), Api2DepartmentSeed("/".join(parts[:depth]))
            )
        if seed.path in departments and departments[seed.path].id is not None:
            raise _fail(f"{where}.departments[{i}]", f"{seed.path!r} appears twice")
        departments[seed.path] = seed
    ids = [d.id for d in departments.values() if d.id is not None]
    if len(ids) != len(set(ids)):
        raise _fail(f"{where}.departments", "two departments have one id")
    users = tuple(
        _user(u, f"{where}.users[{i}]", domains, set(departments))
        for i, u in enumerate(_list(obj, "users", where))
    )
    taken: set[str] = set()
    for i, u in enumerate(users):
        for address in (u.userid, *u.slaves):
            if address in taken:
                raise _fail(f"{where}.users[{i}]", f"address {address!r} is used twice")
            taken.add(address)
    groups = tuple(
        _group(g, f"{where}.groups[{i}]", domains)
        for i, g in enumerate(_list(obj, "groups", where))
    )
    for i, g in enumerate(groups):
        if g.groupid in taken:
            raise _fail(f"{where}.groups[{i}].groupid", f"{g.groupid!r} is already used")
        taken.add(g.groupid)
    return Api2TenantSeed(
        corpid=corpid,
        secrets=secrets,
        domains=domains,
        name=_str(obj, "name", where),
        departments=tuple(departments.values()),
        users=users,
        groups=groups,
        callback=(
            parse_callback(obj["callback"], f"{where}.callback")
            if obj.get("callback") is not None
            else None
        ),
    )


_DEMO_USERS = (
    ("zhangsan", "张三", 1, "后台工程师", ("广州研发中心/邮箱产品部",)),
    ("lisi", "李四", 2, "产品经理", ("广州研发中心",)),
    ("wangwu", "王五", 1, "销售", ("销售部",)),
    ("amy", "Amy Chen", 2, "Designer", ("广州研发中心/邮箱产品部",)),
    ("ben", "Ben Liu", 1, "CEO", ()),
)


def demo_api2_tenant() -> Api2TenantSeed:
    """The built-in second-API tenant: corpid ``wwdemo0000000001`` on ``example.org``,
    secrets ``demo-<app>-secret`` (``demo-directory-secret``, ``demo-sso-secret``, ...)."""
    paths = ("广州研发中心", "广州研发中心/邮箱产品部", "销售部")
    return Api2TenantSeed(
        corpid="wwdemo0000000001",
        secrets={app: f"demo-{app}-secret" for app in API2_APPS},
        domains=("example.org",),
        name="Example Org (API 2)",
        departments=tuple(Api2DepartmentSeed(p) for p in paths),
        users=tuple(
            Api2UserSeed(
                userid=f"{alias}@example.org",
                name=name,
                gender=gender,
                position=position,
                departments=parts,
                mobile=f"1391234{i:04d}",
                extid=f"{i:02d}",
                unread=i % 3,
            )
            for i, (alias, name, gender, position, parts) in enumerate(_DEMO_USERS)
        ),
        groups=(
            Api2GroupSeed(
                groupid="all@example.org",
                groupname="Everyone",
                userlist=tuple(f"{u[0]}@example.org" for u in _DEMO_USERS),
            ),
        ),
    )
