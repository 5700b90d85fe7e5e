"""user/sync and party/sync rules on the pure state, no sockets: every refusal's errcode
and detail (which check fires first included), and what each accepted change does to
the accounts, slaves, groups, departments and the change log."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from relay.emulator import ApiError, EmulatorState, demo_seed
from relay.emulator._model import Company

ADMIN = "admin@example.com"
SIX = [f"s{i}@example.com" for i in range(6)]


def fresh() -> tuple[EmulatorState, Company]:
    state = EmulatorState(demo_seed())
    return state, state.companies[ADMIN]


def directory(company: Company) -> Any:
    """Everything a directory change may touch, as comparable values."""
    return (
        company.ver,
        sorted(company.parties),
        copy.deepcopy(company.accounts),
        dict(company.slaves),
        copy.deepcopy(company.groups),
        list(company.changes),
    )


@pytest.mark.parametrize(
    ("call", "errcode", "detail"),
    [
        ({"action": "zap", "alias": "x@example.com"}, "1001",
         "Action 'zap' is not one of 1 (DEL), 2 (ADD), 3 (MOD)"),
        ({"action": "add", "alias": " "}, "1001", "Alias is required"),
        ({"action": "add", "alias": "nope"}, "1001", "Alias 'nope' is not an email address"),
        ({"action": "add", "alias": "x@other.org"}, "1001",
         "Alias 'x@other.org' is not in a domain of this company"),
        ({"action": "del", "alias": "ghost@example.com"}, "1400", "no account 'ghost@example.com'"),
        ({"action": "add", "alias": "x@example.com", "gender": 3}, "1001",
         "Gender must be 1 (male) or 2 (female)"),
        ({"action": "add", "alias": "x@example.com", "open_type": 3}, "1001",
         "OpenType must be 0 (leave), 1 (enable) or 2 (disable)"),
        ({"action": "add", "alias": "x@example.com", "parties": ["Nope"]}, "1310",
         "no department 'Nope'"),
        ({"action": "add", "alias": "x@example.com", "parties": ["a//b"]}, "1001",
         "department path 'a//b' has an empty level"),
        ({"action": "add", "alias": "x@example.com", "slaves": ["nope"]}, "1001",
         "Slave 'nope' is not an email address"),
        ({"action": "add", "alias": "x@example.com", "slaves": SIX}, "1001",
         "at most 5 Slave addresses per account"),
        ({"action": "add", "alias": "x@example.com", "slaves": ["x@example.com"]}, "1500",
         "address 'x@example.com' is already in use"),
        ({"action": "add", "alias": "x@example.com", "slaves": ["zhangwei.alias@example.com"]},
         "1500", "address 'zhangwei.alias@example.com' is already in use"),
        ({"action": "add", "alias": "x@example.com", "slaves": ["all@example.com"]}, "1500",
         "address 'all@example.com' is already in use"),
        ({"action": "add", "alias": "bob@example.com"}, "1500",
         "address 'bob@example.com' is already in use"),
        ({"action": "add", "alias": "zhangwei.alias@example.com"}, "1500",
         "address 'zhangwei.alias@example.com' is already in use"),
        ({"action": "mod", "alias": "ghost@example.com"}, "1400", "no account 'ghost@example.com'"),
        # the profile is checked before the account is looked up
        ({"action": "mod", "alias": "ghost@example.com", "gender": 5}, "1001",
         "Gender must be 1 (male) or 2 (female)"),
        ({"action": "mod", "alias": "bob@example.com", "slaves": ["zhangwei.alias@example.com"]},
         "1500", "address 'zhangwei.alias@example.com' is already in use"),
    ],
)  # fmt: skip
def test_user_sync_refusals(call: dict[str, Any], errcode: str, detail: str) -> None:
    state, company = fresh()
    before = directory(company)
    with pytest.raises(ApiError) as refused:
        state.user_sync(company, **call)
    assert (refused.value.errcode, refused.value.detail) == (errcode, detail)
    assert directory(company) == before


def test_user_sync_add_fills_the_profile_and_defaults_the_name() -> None:
    state, company = fresh()
    state.user_sync(
        company, "add", " New@Example.com ", gender=2, position="P", tel="1", mobile="2",
        extid="9", parties=["Sales", "", "Sales", "Finance"], slaves=["n1@example.com", " "],
        open_type=0,
    )  # fmt: skip
    account = company.accounts["new@example.com"]
    assert (account.name, account.gender, account.position) == ("new", 2, "P")
    assert (account.tel, account.mobile, account.extid, account.open_type) == ("1", "2", "9", 1)
    assert account.parties == ["Sales", "Finance"]  # root dropped, duplicates folded
    assert account.slaves == ["n1@example.com"]
    assert company.slaves["n1@example.com"] == "new@example.com"
    assert company.changes[-1] == (company.ver, "new@example.com", "add")


def test_user_sync_mod_changes_only_what_it_names() -> None:
    state, company = fresh()
    bob = copy.deepcopy(company.accounts["bob@example.com"])
    state.user_sync(company, "mod", "bob@example.com", position="Lead", open_type=2)
    after = company.accounts["bob@example.com"]
    assert (after.position, after.open_type) == ("Lead", 2)
    assert (after.name, after.gender, after.parties, after.tel) == (
        bob.name, bob.gender, bob.parties, bob.tel,
    )  # fmt: skip
    state.user_sync(company, "mod", "bob@example.com", open_type=0, parties=[])
    assert (after.open_type, after.parties) == (2, [])
    assert company.changes[-1] == (company.ver, "bob@example.com", "mod")


def test_user_sync_mod_replaces_slaves_and_may_keep_its_own() -> None:
    state, company = fresh()
    owner = "zhangwei@example.com"
    state.user_sync(company, "mod", owner, slaves=["zhangwei.alias@example.com", "zw@example.com"])
    assert company.accounts[owner].slaves == ["zhangwei.alias@example.com", "zw@example.com"]
    state.user_sync(company, "mod", owner, slaves=["zw2@example.com"])
    assert company.accounts[owner].slaves == ["zw2@example.com"]
    assert "zhangwei.alias@example.com" not in company.slaves
    assert "zw@example.com" not in company.slaves
    assert company.slaves["zw2@example.com"] == owner
    assert company.kind_of("zhangwei.alias@example.com") == 0


def test_user_sync_del_frees_slaves_and_leaves_groups() -> None:
    state, company = fresh()
    owner = "zhangwei@example.com"
    state.user_sync(company, "del", owner.upper())
    assert owner not in company.accounts
    assert "zhangwei.alias@example.com" not in company.slaves
    assert owner not in company.groups["all@example.com"].members
    assert company.changes[-1] == (company.ver, owner, "del")


@pytest.mark.parametrize(
    ("call", "errcode", "detail"),
    [
        (("zap", "", "X"), "1001", "Action 'zap' is not one of 1 (DEL), 2 (ADD), 3 (MOD)"),
        (("add", "", "  "), "1001", "DstPath is required"),
        (("add", "", "/"), "1001", "the root department cannot be changed"),
        (("add", "", "a//b"), "1001", "department path 'a//b' has an empty level"),
        (("del", "", "Nope"), "1310", "no department 'Nope'"),
        (("del", "", "Sales"), "1001", "department 'Sales' has sub-departments"),
        (("del", "", "Engineering/Platform"), "1001",
         "department 'Engineering/Platform' still has members"),
        (("add", "", "Sales"), "1500", "department 'Sales' already exists"),
        (("add", "", "Nope/Child"), "1310", "no department 'Nope'"),
        (("mod", "", "X"), "1001", "SrcPath is required for MOD"),
        (("mod", "Nope", "X"), "1310", "no department 'Nope'"),
        (("mod", "/", "X"), "1001", "the root department cannot be changed"),
        (("mod", "Sales", "Sales/East/Deeper"), "1001", "a department cannot move into itself"),
        (("mod", "Sales", "Engineering"), "1500", "department 'Engineering' already exists"),
        (("mod", "Sales", "a/b/c/d"), "1310", "no department 'a/b/c'"),
        (("mod", "Engineering", "Nope/X"), "1310", "no department 'Nope'"),
    ],
)  # fmt: skip
def test_party_sync_refusals(call: tuple[str, str, str], errcode: str, detail: str) -> None:
    state, company = fresh()
    before = directory(company)
    with pytest.raises(ApiError) as refused:
        state.party_sync(company, *call)  # type: ignore[arg-type]
    assert (refused.value.errcode, refused.value.detail) == (errcode, detail)
    assert directory(company) == before


def test_party_sync_refuses_a_move_that_nests_too_deep() -> None:
    state, company = fresh()
    for path in ("A", "A/B", "A/B/C", "A/B/C/D"):
        state.party_sync(company, "add", "", path)
    before = directory(company)
    with pytest.raises(ApiError) as refused:
        state.party_sync(company, "mod", "Sales", "A/B/C/D/Sales")  # Sales/East would be 6 deep
    assert (refused.value.errcode, refused.value.detail) == (
        "1001",
        "moving 'Sales' would nest departments deeper than 5 levels",
    )
    assert directory(company) == before
    state.party_sync(company, "mod", "Finance", "A/B/C/D/Finance")  # no children: 5 deep is fine
    assert "A/B/C/D/Finance" in company.parties


def test_party_sync_add_and_del_bump_ver_without_account_changes() -> None:
    state, company = fresh()
    ver, changes = company.ver, list(company.changes)
    state.party_sync(company, "add", "", " /Finance/Audit/ ")
    assert "Finance/Audit" in company.parties
    assert company.ver > ver
    state.party_sync(company, "del", "", "Finance/Audit")
    assert "Finance/Audit" not in company.parties
    assert company.changes == changes


def test_party_sync_mod_moves_the_subtree_and_logs_each_moved_member() -> None:
    state, company = fresh()
    state.party_sync(company, "mod", "Sales", "Finance/Sales")
    assert {"Finance/Sales", "Finance/Sales/East"} <= company.parties
    assert not {"Sales", "Sales/East"} & company.parties
    assert company.accounts["sunhao@example.com"].parties == ["Finance/Sales/East", "Engineering"]
    moved = [(alias, action) for ver, alias, action in company.changes if ver == company.ver]
    sales = ["zhangwei", "lina", "wangfang", "liuyang", "chenjing", "frank", "sunhao"]
    assert sorted(moved) == sorted((f"{name}@example.com", "mod") for name in sales)
    assert company.accounts["bob@example.com"].parties == ["Engineering/Platform"]
