"""The data of a second-API tenant: departments, members, mailboxes, groups, tags, logs.

Plain dataclasses with lookups and no rules (those are in ``_api2directory`` and
``_api2state``). Department ids are Python ints: the root is ``1`` and the emulator
issues the others above 2**53 (``DEPARTMENT_ID_BASE``), so a client that reads JSON
numbers as floats loses them, as BANG's did (notes §1).

The seams: ``Tenant2.on_mail`` and ``Tenant2.on_unread`` are lists of callables (empty
by default) that the emulator calls, synchronously, with the plain fields of the
new-mail callback's messages (notes §9.6) each time mail is delivered to a member, or
the member's unread count changes, through the control API:

- ``on_mail(fields)``: ``{"CorpID", "MailID", "ToUserID", "FromUser", "Title", "Time",
  "NewCount"}`` (``MsgType`` ``Mail`` is implied);
- ``on_unread(fields)``: ``{"CorpID", "UserID", "Time", "UnReadCount"}`` (``UnRead``).

The callback sender (signing, encryption, retries: ``_api2callbacks``) is wired in there
as an emulator-wide hook that sends for every tenant whose ``callback`` is saved; a
callable must not block (it runs inside the control request): to send it queues.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from hmac import compare_digest
from typing import Any

from ._api2seed import Api2CallbackSeed
from ._errors import Api2Error

__all__ = [
    "DEPARTMENT_ID_BASE",
    "ROOT_ID",
    "Department2",
    "Group2",
    "Mail2",
    "Member2",
    "MessageHook",
    "Tag2",
    "Tenant2",
    "Token2",
]

ROOT_ID = 1
DEPARTMENT_ID_BASE = 4913577855806636138  # NIN's test id: above 2**53, below 2**63
MessageHook = Callable[[dict[str, Any]], None]


@dataclass(slots=True)
class Department2:
    id: int
    name: str
    parentid: int
    order: int = 0


@dataclass(slots=True)
class Mail2:
    mail_id: str
    sender: str
    title: str
    time: int
    read: bool = False


@dataclass(slots=True)
class Member2:
    userid: str
    name: str
    department: list[int] = field(default_factory=list)
    position: str = ""
    mobile: str = ""
    tel: str = ""
    extid: str = ""
    gender: int = 0
    enable: int = 1
    slaves: list[str] = field(default_factory=list)
    cpwd_login: int = 0
    password: str = field(default="", repr=False)
    mails: list[Mail2] = field(default_factory=list, repr=False)
    options: dict[int, str] = field(default_factory=lambda: {1: "0", 2: "1", 3: "1", 4: "0"})

    @property
    def unread(self) -> int:
        return sum(1 for m in self.mails if not m.read)

    def profile(self) -> dict[str, Any]:
        """``user/get``'s fields (and a ``user/list`` entry): gender as a string and
        enable as a number, as in the doc's example."""
        return {
            "userid": self.userid,
            "name": self.name,
            "department": list(self.department),
            "position": self.position,
            "mobile": self.mobile,
            "tel": self.tel,
            "extid": self.extid,
            "gender": str(self.gender),
            "enable": self.enable,
            "slaves": list(self.slaves),
            "cpwd_login": self.cpwd_login,
        }


@dataclass(slots=True)
class Group2:
    groupid: str
    groupname: str
    allow_type: int
    userlist: list[str] = field(default_factory=list)
    grouplist: list[str] = field(default_factory=list)
    department: list[int] = field(default_factory=list)
    allow_userlist: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Tag2:
    tagid: int
    tagname: str
    userlist: list[str] = field(default_factory=list)
    partylist: list[int] = field(default_factory=list)


@dataclass(slots=True)
class Token2:
    corpid: str
    app: str
    expires: float
    generation: int  # tokens issued for (corpid, app) so far; names a token in the state


@dataclass(slots=True, eq=False)
class Tenant2:
    corpid: str
    secrets: dict[str, str] = field(repr=False)
    domains: tuple[str, ...]
    name: str = ""
    departments: dict[int, Department2] = field(default_factory=dict, repr=False)
    members: dict[str, Member2] = field(default_factory=dict, repr=False)
    slaves: dict[str, str] = field(default_factory=dict, repr=False)  # alias -> userid
    groups: dict[str, Group2] = field(default_factory=dict, repr=False)
    tags: dict[int, Tag2] = field(default_factory=dict, repr=False)
    next_department: int = DEPARTMENT_ID_BASE
    next_tag: int = 1
    operations: list[dict[str, Any]] = field(default_factory=list, repr=False)  # log/operation
    logins: list[dict[str, Any]] = field(default_factory=list, repr=False)  # log/login
    mail_log: list[dict[str, Any]] = field(default_factory=list, repr=False)  # log/mail
    on_mail: list[MessageHook] = field(default_factory=list, repr=False)
    on_unread: list[MessageHook] = field(default_factory=list, repr=False)
    callback: Api2CallbackSeed | None = field(default=None, repr=False)  # the saved settings

    def owns(self, address: str) -> bool:
        return address.rpartition("@")[2] in self.domains

    def app_of_secret(self, secret: str) -> str | None:
        given = secret.encode("utf-8")
        for app, value in self.secrets.items():
            if compare_digest(value.encode("utf-8"), given):
                return app
        return None

    def member(self, userid: str) -> Member2:
        """The member with this address (an alias resolves too), or 60111."""
        address = userid.strip().lower()
        found = self.members.get(self.slaves.get(address, address))
        if found is None:
            raise Api2Error(60111, "userid not found")
        return found

    def department(self, ident: int) -> Department2:
        found = self.departments.get(ident)
        if found is None:
            raise Api2Error(60003, "department not found")
        return found

    def children(self, ident: int) -> list[Department2]:
        return [d for d in self.departments.values() if d.parentid == ident and d.id != ident]

    def subtree(self, ident: int) -> list[tuple[int, Department2]]:
        """``ident`` and every descendant with its depth below ``ident``, ordered by
        ``(depth, order, id)``."""
        out = [(0, self.department(ident))]
        frontier = [ident]
        depth = 0
        while frontier:
            depth += 1
            level = [d for p in frontier for d in self.children(p)]
            level.sort(key=lambda d: (d.order, d.id))
            out += [(depth, d) for d in level]
            frontier = [d.id for d in level]
        return out

    def path(self, ident: int) -> str:
        """``a/b/c`` from below the root down to ``ident`` (the root itself: ``""``)."""
        names: list[str] = []
        current = self.departments.get(ident)
        while current is not None and current.id != ROOT_ID:
            names.append(current.name)
            current = self.departments.get(current.parentid)
        return "/".join(reversed(names))

    def kind_of(self, address: str) -> int:
        """``user/batchcheck``'s type: 0 free, 1 account, 2 alias, 3 group (-1: caller)."""
        if address in self.members:
            return 1
        if address in self.slaves:
            return 2
        return 3 if address in self.groups else 0
