"""Directory rules: accounts, departments and mail groups of one company. No I/O.

Each function checks the documented rules of one operation against a ``Company``, applies
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
    """Add, change or delete one account; the answer is the change to log.

    Every check runs before anything changes, in a fixed order that decides which refusal
    a request with several faults gets: the action, the alias, then (DEL) the account, or
    the profile, the departments, the alias addresses, and last whether the address is
    free (ADD) or the account exists (MOD).
    """
    _check_action(action)
    address = _alias(company, alias)
    if action == "del":
        return _delete_account(company, address)
    _check_profile(gender, open_type)
    new_parties = None if parties is None else _account_parties(company, parties)
    new_slaves = None if slaves is None else _account_slaves(company, address, slaves)
    if action == "add":
        account = _new_account(company, address, name)
    else:
        account = company.account(address)
        if name is not None:
            account.name = name
    _apply_profile(account, gender, position, tel, mobile, extid, open_type)
    if new_parties is not None:
        account.parties = new_parties
    if new_slaves is not None:
        _replace_slaves(company, account, new_slaves)
    return [(address, action)]


def _check_action(action: str) -> None:
    if action not in ("add", "mod", "del"):
        raise invalid_parameter(f"Action {action!r} is not one of 1 (DEL), 2 (ADD), 3 (MOD)")


def _alias(company: Company, alias: str) -> str:
    if not alias or not alias.strip():
        raise invalid_parameter("Alias is required")
    return _address(company, alias, "Alias")


def _delete_account(company: Company, address: str) -> list[tuple[str, Action]]:
    """Remove the account, free its alias addresses and take it out of every mail group."""
    account = company.account(address)
    del company.accounts[address]
    for slave in account.slaves:
        company.slaves.pop(slave, None)
    for group in company.groups.values():
        if address in group.members:
            group.members.remove(address)
    return [(address, "del")]


def _check_profile(gender: int | None, open_type: int | None) -> None:
    if gender is not None and gender not in (1, 2):
        raise invalid_parameter("Gender must be 1 (male) or 2 (female)")
    if open_type is not None and open_type not in (0, 1, 2):
        raise invalid_parameter("OpenType must be 0 (leave), 1 (enable) or 2 (disable)")


def _account_parties(company: Company, parties: list[str]) -> list[str]:
    """The departments to set: each must exist; duplicates fold, the root is implied."""
    paths = [_existing_path(company, p) for p in parties]
    return [p for p in dict.fromkeys(paths) if p]


def _account_slaves(company: Company, address: str, slaves: list[str]) -> list[str]:
    """The alias addresses to set: at most ``MAX_SLAVES``, each free or already this
    account's own; blank entries are skipped and duplicates fold."""
    new = list(dict.fromkeys(_address(company, s, "Slave") for s in slaves if s.strip()))
    if len(new) > MAX_SLAVES:
        raise invalid_parameter(f"at most {MAX_SLAVES} Slave addresses per account")
    for slave in new:
        if not _may_alias(company, slave, address):
            raise already_exists(f"address {slave!r} is already in use")
    return new


def _may_alias(company: Company, slave: str, owner: str) -> bool:
    """Whether ``slave`` may become (or stay) an alias address of the account ``owner``."""
    if slave == owner:
        return False
    return company.kind_of(slave) == 0 or company.slaves.get(slave) == owner


def _new_account(company: Company, address: str, name: str | None) -> Account:
    """ADD: the address must be free; the name defaults to the address's local part."""
    if company.kind_of(address) != 0:
        raise already_exists(f"address {address!r} is already in use")
    account = Account(alias=address, name=name or address.split("@", 1)[0])
    company.accounts[address] = account
    return account


def _replace_slaves(company: Company, account: Account, slaves: list[str]) -> None:
    for slave in account.slaves:
        company.slaves.pop(slave, None)
    account.slaves = slaves
    for slave in slaves:
        company.slaves[slave] = account.alias


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
    """Add, delete or move (MOD: ``src`` to ``dst``, with its subtree) one department; the
    answer lists the accounts a move changed. Every check runs before anything changes."""
    _check_action(action)
    target = _dst_path(dst)
    if action == "del":
        _delete_party(company, target)
        return []
    _check_new_party(company, target)
    if action == "add":
        company.parties.add(target)
        return []
    source = _src_path(company, src, target)
    _check_move_depth(company, source, target)
    return _move_party(company, source, target)


def _dst_path(dst: str) -> str:
    if not dst.strip():
        raise invalid_parameter("DstPath is required")
    return _path(dst, allow_root=False)


def _delete_party(company: Company, target: str) -> None:
    """DEL: only an existing department with no sub-departments and no members."""
    if target not in company.parties:
        raise party_not_found(target)
    prefix = target + "/"
    if any(p.startswith(prefix) for p in company.parties):
        raise invalid_parameter(f"department {target!r} has sub-departments")
    if any(target in a.parties for a in company.accounts.values()):
        raise invalid_parameter(f"department {target!r} still has members")
    company.parties.discard(target)


def _check_new_party(company: Company, target: str) -> None:
    """ADD and MOD: the new path must be free, and its parent must exist."""
    if target in company.parties:
        raise already_exists(f"department {target!r} already exists")
    parent = target.rpartition("/")[0]
    if parent and parent not in company.parties:
        raise party_not_found(parent)


def _src_path(company: Company, src: str, target: str) -> str:
    """MOD: the department to move must exist and may not move under itself."""
    if not src.strip():
        raise invalid_parameter("SrcPath is required for MOD")
    source = _path(src, allow_root=False)
    if source not in company.parties:
        raise party_not_found(source)
    if target.startswith(source + "/"):
        raise invalid_parameter("a department cannot move into itself")
    return source


def _moved(path: str, source: str, target: str) -> str:
    """Where ``path`` lands when ``source`` and its subtree move to ``target``."""
    if path == source:
        return target
    if path.startswith(source + "/"):
        return target + path[len(source) :]
    return path


def _check_move_depth(company: Company, source: str, target: str) -> None:
    if any(len(_moved(p, source, target).split("/")) > MAX_PARTY_DEPTH for p in company.parties):
        raise invalid_parameter(
            f"moving {source!r} would nest departments deeper than {MAX_PARTY_DEPTH} levels"
        )


def _move_party(company: Company, source: str, target: str) -> list[tuple[str, Action]]:
    """Rename the subtree, and each member's departments; every member moved is a MOD."""
    company.parties = {_moved(p, source, target) for p in company.parties}
    changed: list[tuple[str, Action]] = []
    for account in company.accounts.values():
        updated = [_moved(p, source, target) for p in account.parties]
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
