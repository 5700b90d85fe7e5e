"""The emulator's data: one company's accounts, mail groups, departments and queues.

Plain dataclasses with no rules beyond lookups. They sit below both ``_directory`` (the
directory rules) and ``_state`` (everything else the protocol decides), so that either
can use them without importing the other.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from ._errors import user_not_found
from ._seed import normalize_email

__all__ = ["Account", "Action", "Company", "Group", "Push"]

Action = Literal["add", "mod", "del"]
Push = dict[str, Any]


@dataclass(slots=True)
class Account:
    alias: str
    name: str
    gender: int = 0
    position: str = ""
    tel: str = ""
    mobile: str = ""
    extid: str = ""
    parties: list[str] = field(default_factory=list)
    slaves: list[str] = field(default_factory=list)
    open_type: int = 1
    unread: int = 0
    wx_token: bool = False


@dataclass(slots=True)
class Group:
    alias: str
    name: str
    status: str
    members: list[str] = field(default_factory=list)
    allow_list: list[str] = field(default_factory=list)


@dataclass(slots=True, eq=False)
class Company:
    admin: str
    key: str = field(repr=False)
    domains: tuple[str, ...]
    name: str
    ver: int
    pending: deque[Push] = field(repr=False)
    parties: set[str] = field(default_factory=set, repr=False)
    accounts: dict[str, Account] = field(default_factory=dict, repr=False)
    slaves: dict[str, str] = field(default_factory=dict, repr=False)  # slave -> primary
    groups: dict[str, Group] = field(default_factory=dict, repr=False)
    changes: list[tuple[int, str, Action]] = field(default_factory=list, repr=False)
    dropped: int = 0
    token: str | None = field(default=None, repr=False)
    token_expires: float = 0.0
    token_generation: int = 0  # tokens issued so far; names a token in logs, never shown
    unacked: list[Push] = field(default_factory=list, repr=False)
    unacked_token: str | None = field(default=None, repr=False)

    def owns(self, address: str) -> bool:
        return address.rpartition("@")[2] in self.domains

    def kind_of(self, address: str) -> int:
        """user/check's Type for an address of this company: 0 free, 1, 2 or 3."""
        if address in self.accounts:
            return 1
        if address in self.slaves:
            return 2
        return 3 if address in self.groups else 0

    def account(self, alias: str) -> Account:
        """The account with this primary address, or ``user_not_found``."""
        account = self.accounts.get(normalize_email(alias))
        if account is None:
            raise user_not_found(alias)
        return account

    def resolve(self, address: str) -> Account | None:
        """The account an address (primary or alias) delivers to."""
        address = normalize_email(address)
        primary = self.slaves.get(address, address)
        return self.accounts.get(primary)
