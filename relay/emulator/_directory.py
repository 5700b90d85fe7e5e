"""Directory rules: accounts, departments and mail groups of one company. No I/O.

Each function checks the documented rules of one endpoint against a ``Company``, applies
the change, and returns what it changed; ``EmulatorState`` bumps the version and logs.
Refusals are ``ApiError``s (see ``_errors`` for the codes).
"""

from __future__ import annotations

from typing import Any

from ._errors import (
    already_exists,
    group_not_found,
    invalid_parameter,
    party_not_found,
    user_not_found,
)
from ._model import Account, Action, Company, Group
from ._seed import GROUP_STATUSES, MAX_PARTY_DEPTH, is_email, normalize_email, split_path

__all__ = [
    "group_add",
    "group_allow_list",
    "group_delete",
    "group_members",
    "party_list",
    "party_sync",
    "partyuser_list",
    "user_check",
    "user_get",
    "user_sync",
]

MAX_SLAVES = 5
MAX_CHECK = 20


def _address(company: Company, value: str, what: str) -> str:
    address = normalize_email(value)
    if not is_email(address):
        raise invalid_parameter(f"{what} {value!r} is not an email address")
    if not company.owns(address):
        raise invalid_parameter(f"{what} {value!r} is not in a domain of this company")
    return address


def _path(value: str, *, allow_root: bool = True) -> str:
    parts = split_path(value)
    if isinstance(parts, str):
        raise invalid_parameter(parts)
    if not parts and not allow_root:
        raise invalid_parameter("the root department cannot be changed")
    return "/".join(parts)


def _existing_path(company: Company, value: str) -> str:
    path = _path(value)
    if path and path not in company.parties:
        raise party_not_found(path)
    return path


# -- accounts --------------------------------------------------------------------------------


def user_get(company: Company, alias: str) -> dict[str, Any]:
    a = company.account(alias)
    return {
        "Alias": a.alias,
        "Name": a.name,
        "Gender": a.gender,
        "SlaveList": ",".join(a.slaves),
        "Position": a.position,
        "Tel": a.tel,
        "Mobile": a.mobile,
        "ExtId": a.extid,
        "PartyList": {"Count": len(a.parties), "List": [{"Value": p} for p in a.parties]},
        "OpenType": a.open_type,
    }


def user_sync(
    company: Company,
    action: Action,
    alias: str,
    *,
    name: str | None = None,
    gender: int | None = None,
    position: str | None = None,
    tel: str | None = None,
    mobile: str | None = None,
    extid: str | None = None,
    parties: list[str] | None = None,
    slaves: list[str] | None = None,
    open_type: int | None = None,
) -> list[tuple[str, Action]]:
    if action not in ("add", "mod", "del"):
        raise invalid_parameter(f"Action {action!r} is not one of 1 (DEL), 2 (ADD), 3 (MOD)")
    if not alias or not alias.strip():
        raise invalid_parameter("Alias is required")
    address = _address(company, alias, "Alias")
    if action == "del":
        account = company.account(address)
        del company.accounts[address]
        for slave in account.slaves:
            company.slaves.pop(slave, None)
        for group in company.groups.values():
            if address in group.members:
                group.members.remove(address)
        return [(address, "del")]
    if gender is not None and gender not in (1, 2):
        raise invalid_parameter("Gender must be 1 (male) or 2 (female)")
    if open_type is not None and open_type not in (0, 1, 2):
        raise invalid_parameter("OpenType must be 0 (leave), 1 (enable) or 2 (disable)")
    new_parties = None if parties is None else [_existing_path(company, p) for p in parties]
    if new_parties is not None:
        new_parties = [p for p in dict.fromkeys(new_parties) if p]  # root is implied
    new_slaves = None
    if slaves is not None:
        new_slaves = list(dict.fromkeys(_address(company, s, "Slave") for s in slaves if s.strip()))
        if len(new_slaves) > MAX_SLAVES:
            raise invalid_parameter(f"at most {MAX_SLAVES} Slave addresses per account")
        for slave in new_slaves:
            if slave == address or (
                company.kind_of(slave) != 0 and company.slaves.get(slave) != address
            ):
                raise already_exists(f"address {slave!r} is already in use")
    if action == "add":
        if company.kind_of(address) != 0:
            raise already_exists(f"address {address!r} is already in use")
        account = Account(alias=address, name=name or address.split("@", 1)[0])
        company.accounts[address] = account
    else:
        account = company.account(address)
        if name is not None:
            account.name = name
    _apply_profile(account, gender, position, tel, mobile, extid, open_type)
    if new_parties is not None:
        account.parties = new_parties
    if new_slaves is not None:
        for slave in account.slaves:
            company.slaves.pop(slave, None)
        account.slaves = new_slaves
        for slave in new_slaves:
            company.slaves[slave] = address
    return [(address, action)]


def _apply_profile(
    account: Account,
    gender: int | None,
    position: str | None,
    tel: str | None,
    mobile: str | None,
    extid: str | None,
    open_type: int | None,
) -> None:
    if gender is not None:
        account.gender = gender
    if position is not None:
        account.position = position
    if tel is not None:
        account.tel = tel
    if mobile is not None:
        account.mobile = mobile
    if extid is not None:
        account.extid = extid
    if open_type:  # 0 = leave the status as it is
        account.open_type = open_type


def user_check(company: Company, emails: list[str]) -> dict[str, Any]:
    if not emails:
        raise invalid_parameter("email is required")
    if len(emails) > MAX_CHECK:
        raise invalid_parameter(f"at most {MAX_CHECK} email parameters")
    out = []
    for raw in emails:
        address = normalize_email(raw)
        kind = company.kind_of(address) if is_email(address) and company.owns(address) else -1
        out.append({"Email": raw.strip(), "Type": kind})
    return {"Count": len(out), "List": out}


def set_wx_token(company: Company, alias: str, on: bool) -> None:
    company.account(alias).wx_token = on


# -- departments ------------------------------------------------------------------------------


def party_sync(company: Company, action: Action, src: str, dst: str) -> list[tuple[str, Action]]:
    if action not in ("add", "mod", "del"):
        raise invalid_parameter(f"Action {action!r} is not one of 1 (DEL), 2 (ADD), 3 (MOD)")
    if not dst.strip():
        raise invalid_parameter("DstPath is required")
    target = _path(dst, allow_root=False)
    parent = target.rpartition("/")[0]
    if action == "del":
        if target not in company.parties:
            raise party_not_found(target)
        prefix = target + "/"
        if any(p.startswith(prefix) for p in company.parties):
            raise invalid_parameter(f"department {target!r} has sub-departments")
        if any(target in a.parties for a in company.accounts.values()):
            raise invalid_parameter(f"department {target!r} still has members")
        company.parties.discard(target)
        return []
    if target in company.parties:
        raise already_exists(f"department {target!r} already exists")
    if parent and parent not in company.parties:
        raise party_not_found(parent)
    if action == "add":
        company.parties.add(target)
        return []
    if not src.strip():
        raise invalid_parameter("SrcPath is required for MOD")
    source = _path(src, allow_root=False)
    if source not in company.parties:
        raise party_not_found(source)
    if target.startswith(source + "/"):
        raise invalid_parameter("a department cannot move into itself")

    def moved(path: str) -> str:
        if path == source:
            return target
        if path.startswith(source + "/"):
            return target + path[len(source) :]
        return path

    if any(len(moved(p).split("/")) > MAX_PARTY_DEPTH for p in company.parties):
        raise invalid_parameter(f"moving {source!r} would nest departments deeper than 5 levels")
    company.parties = {moved(p) for p in company.parties}
    changed: list[tuple[str, Action]] = []
    for account in company.accounts.values():
        updated = [moved(p) for p in account.parties]
        if updated != account.parties:
            account.parties = updated
            changed.append((account.alias, "mod"))
    return changed


def party_list(company: Company, path: str) -> dict[str, Any]:
    parent = _existing_path(company, path)
    prefix = parent + "/" if parent else ""
    children = sorted(
        p[len(prefix) :]
        for p in company.parties
        if p.startswith(prefix) and "/" not in p[len(prefix) :]
    )
    return {"Count": len(children), "List": [{"Value": c} for c in children]}


def partyuser_list(company: Company, path: str) -> dict[str, Any]:
    party = _existing_path(company, path)
    if party:
        members = [a.alias for a in company.accounts.values() if party in a.parties]
    else:
        members = [a.alias for a in company.accounts.values() if not a.parties]
    return {"Count": len(members), "List": [{"Value": m} for m in members]}


# -- mail groups ------------------------------------------------------------------------------


def _group(company: Company, alias: str | None) -> Group:
    if not alias or not alias.strip():
        raise invalid_parameter("group_alias is required")
    group = company.groups.get(normalize_email(alias))
    if group is None:
        raise group_not_found(alias)
    return group


def _members(company: Company, members: list[str]) -> list[str]:
    out = []
    for m in members:
        account = company.resolve(m)
        if account is None:
            raise user_not_found(m)
        out.append(account.alias)
    return list(dict.fromkeys(out))


def group_add(
    company: Company, name: str | None, admin: str | None, status: str | None, members: list[str]
) -> None:
    if not name or not name.strip():
        raise invalid_parameter("group_name is required")
    if not admin or not admin.strip():
        raise invalid_parameter("group_admin is required")
    address = _address(company, admin, "group_admin")
    if status not in GROUP_STATUSES:
        raise invalid_parameter(f"status must be one of {', '.join(GROUP_STATUSES)}")
    if company.kind_of(address) != 0:
        raise already_exists(f"address {address!r} is already in use")
    company.groups[address] = Group(address, name.strip(), status, _members(company, members))


def group_delete(company: Company, alias: str | None) -> None:
    del company.groups[_group(company, alias).alias]


def group_members(company: Company, alias: str | None, members: list[str], add: bool) -> None:
    group = _group(company, alias)
    if not members:
        raise invalid_parameter("members is required")
    resolved = _members(company, members)
    if add:
        group.members.extend(m for m in resolved if m not in group.members)
    else:
        group.members = [m for m in group.members if m not in resolved]


def group_allow_list(company: Company, alias: str | None, allow: list[str], add: bool) -> None:
    group = _group(company, alias)
    if group.status != "list":
        raise invalid_parameter("the allow list only applies to groups with status 'list'")
    entries = [normalize_email(a) for raw in allow for a in raw.split(",") if a.strip()]
    if not entries:
        raise invalid_parameter("allow_list is required")
    for entry in entries:
        if not is_email(entry):
            raise invalid_parameter(f"allow_list entry {entry!r} is not an email address")
    if add:
        group.allow_list.extend(e for e in dict.fromkeys(entries) if e not in group.allow_list)
        return
    remaining = [e for e in group.allow_list if e not in entries]
    if not remaining:
        raise invalid_parameter("the allow list may not be emptied")
    group.allow_list = remaining
