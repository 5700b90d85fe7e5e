"""Directory operations over HTTP: every success path and every validation rule."""

from __future__ import annotations

from typing import Any

import pytest

ADMIN = "admin@example.com"


def err(body: Any) -> str:
    assert isinstance(body, dict), body
    return str(body.get("errcode"))


async def test_user_get_shape(raw: Any) -> None:
    body = await raw.call("user/get", {"Alias": " Zhaolei@Example.com "})
    assert body["Alias"] == "zhaolei@example.com"
    assert body["Gender"] == 1
    assert body["PartyList"] == {
        "Count": 2,
        "List": [{"Value": "Engineering"}, {"Value": "Engineering/Platform"}],
    }
    assert body["OpenType"] == 1
    assert set(body) == {
        "Alias", "Name", "Gender", "SlaveList", "Position", "Tel", "Mobile", "ExtId",
        "PartyList", "OpenType",
    }  # fmt: skip
    slaves = await raw.call("user/get", {"Alias": "zhangwei@example.com"})
    assert slaves["SlaveList"] == "zhangwei.alias@example.com"


async def test_user_get_errors(raw: Any) -> None:
    assert await raw.call("user/get", {"Alias": "ghost@example.com"}) == {
        "errcode": "1400",
        "error": "user_not_found",
        "detail": "no account 'ghost@example.com'",
    }
    assert err(await raw.call("user/get", {})) == "1001"


async def test_user_sync_add_mod_del(raw: Any) -> None:
    add = [
        ("Action", "2"), ("Alias", "neo@example.com"), ("Name", "Neo"), ("Gender", "1"),
        ("Position", "One"), ("Tel", "1"), ("Mobile", "2"), ("ExtId", "9"), ("Password", "x"),
        ("Md5", "0"), ("PartyPath", "Sales/East"), ("PartyPath", "Finance"),
        ("Slave", "n1@example.com"), ("Slave", "n2@example.com"), ("OpenType", "1"),
    ]  # fmt: skip
    assert await raw.call("user/sync", add) is None
    got = await raw.call("user/get", {"Alias": "neo@example.com"})
    assert got["SlaveList"] == "n1@example.com,n2@example.com"
    assert [p["Value"] for p in got["PartyList"]["List"]] == ["Sales/East", "Finance"]
    check = await raw.call("user/check", [("email", "n1@example.com")])
    assert check["List"][0]["Type"] == 2
    mod = {"action": "3", "alias": "neo@example.com", "name": "Thomas", "opentype": "2"}
    assert await raw.call("user/sync", mod) is None
    got = await raw.call("user/get", {"Alias": "neo@example.com"})
    assert (got["Name"], got["OpenType"], got["Position"]) == ("Thomas", 2, "One")
    assert await raw.call("user/sync", {"Action": "1", "Alias": "neo@example.com"}) is None
    assert err(await raw.call("user/get", {"Alias": "neo@example.com"})) == "1400"
    assert (await raw.call("user/check", [("email", "n1@example.com")]))["List"][0]["Type"] == 0


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"Action": "2"}, "1001"),  # Alias missing
        ({"Alias": "x@example.com"}, "1001"),  # Action missing
        ({"Action": "7", "Alias": "x@example.com"}, "1001"),
        ({"Action": "2", "Alias": "not-an-email"}, "1001"),
        ({"Action": "2", "Alias": "x@other.org"}, "1001"),  # domain not owned
        ({"Action": "2", "Alias": "x@example.com", "Gender": "3"}, "1001"),
        ({"Action": "2", "Alias": "x@example.com", "OpenType": "5"}, "1001"),
        ({"Action": "2", "Alias": "x@example.com", "Md5": "2"}, "1001"),
        ({"Action": "2", "Alias": "x@example.com", "Gender": "male"}, "1001"),
        ({"Action": "2", "Alias": "x@example.com", "PartyPath": "Nope"}, "1310"),
        ({"Action": "2", "Alias": "x@example.com", "PartyPath": "a/b/c/d/e/f"}, "1001"),
        ({"Action": "2", "Alias": "x@example.com", "PartyPath": "a" * 65}, "1001"),
        ({"Action": "2", "Alias": "x@example.com", "Slave": "nope"}, "1001"),
        ({"Action": "2", "Alias": "x@example.com", "Slave": "bob@example.com"}, "1500"),
        ({"Action": "2", "Alias": "bob@example.com"}, "1500"),
        ({"Action": "2", "Alias": "all@example.com"}, "1500"),  # a group's address
        ({"Action": "3", "Alias": "ghost@example.com"}, "1400"),
        ({"Action": "1", "Alias": "ghost@example.com"}, "1400"),
    ],
)
async def test_user_sync_rules(raw: Any, params: dict[str, str], code: str) -> None:
    ver = raw.emu.state.companies[ADMIN].ver
    assert err(await raw.call("user/sync", params)) == code
    assert raw.emu.state.companies[ADMIN].ver == ver  # a refusal changes nothing


async def test_user_sync_at_most_five_slaves(raw: Any) -> None:
    six = [("Slave", f"s{i}@example.com") for i in range(6)]
    body = await raw.call("user/sync", [("Action", "2"), ("Alias", "x@example.com"), *six])
    assert err(body) == "1001"
    assert "5" in body["detail"]
    assert (
        await raw.call("user/sync", [("Action", "2"), ("Alias", "x@example.com"), *six[:5]]) is None
    )


async def test_user_list_over_http(raw: Any) -> None:
    everyone = await raw.call("user/list", {"Ver": "0"})
    assert everyone["Count"] == 20
    assert {e["Action"] for e in everyone["List"]} == {1}
    assert isinstance(everyone["Ver"], int)
    await raw.call("user/sync", {"Action": "1", "Alias": "bob@example.com"})
    later = await raw.call("user/list", {"Ver": str(everyone["Ver"])})
    assert later["List"] == [{"Action": 3, "Alias": "bob@example.com"}]
    assert later["Ver"] > everyone["Ver"]
    assert err(await raw.call("user/list", {"Ver": "abc"})) == "1001"


async def test_newcount(raw: Any) -> None:
    await raw.control("mail", {"to": "bob@example.com"})
    unread = raw.emu.state.companies[ADMIN].accounts["bob@example.com"].unread
    assert await raw.call("mail/newcount", {"Alias": "bob@example.com"}) == {
        "Alias": "bob@example.com",
        "NewCount": unread,
    }
    assert err(await raw.call("mail/newcount", {"Alias": "ghost@example.com"})) == "1400"


async def test_party_sync_list_and_partyuser(raw: Any) -> None:
    assert await raw.call("party/sync", {"Action": "2", "DstPath": "Sales/West"}) is None
    kids = await raw.call("party/list", {"PartyPath": "Sales"})
    assert kids == {"Count": 2, "List": [{"Value": "East"}, {"Value": "West"}]}
    mod = {"action": "3", "srcpath": "Sales/West", "dstpath": "Finance/West"}
    assert await raw.call("party/sync", mod) is None
    assert (await raw.call("party/list", {"PartyPath": "Finance"}))["List"] == [{"Value": "West"}]
    assert await raw.call("party/sync", {"Action": "1", "DstPath": "Finance/West"}) is None
    assert (await raw.call("party/list", {"PartyPath": "Finance"}))["Count"] == 0
    east = await raw.call("partyuser/list", {"PartyPath": "Sales/East"})
    assert {"Value": "lina@example.com"} in east["List"]
    root = await raw.call("partyuser/list", {"PartyPath": ""})
    assert {"Value": "grace@example.com"} in root["List"]
    assert {"Value": "bob@example.com"} not in root["List"]
    top = await raw.call("party/list", {})
    assert top["Count"] == 3


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"Action": "2", "DstPath": "Nope/Child"}, "1310"),  # ADD under a missing parent
        ({"Action": "2", "DstPath": "Sales"}, "1500"),
        ({"Action": "1", "DstPath": "Nope"}, "1310"),
        ({"Action": "1", "DstPath": "Sales"}, "1001"),  # has sub-departments and members
        ({"Action": "3", "SrcPath": "Nope", "DstPath": "X"}, "1310"),
        ({"Action": "3", "DstPath": "X"}, "1001"),  # MOD needs SrcPath
        ({"Action": "3", "SrcPath": "Sales", "DstPath": "Sales/East/Sales"}, "1001"),
        ({"Action": "2"}, "1001"),
        ({"Action": "2", "DstPath": "a/b/c/d/e/f"}, "1001"),
        ({"Action": "2", "DstPath": "x" * 65}, "1001"),
        ({"Action": "9", "DstPath": "X"}, "1001"),
    ],
)
async def test_party_sync_rules(raw: Any, params: dict[str, str], code: str) -> None:
    assert err(await raw.call("party/sync", params)) == code


async def test_party_list_missing(raw: Any) -> None:
    assert err(await raw.call("party/list", {"PartyPath": "Nope"})) == "1310"
    assert err(await raw.call("partyuser/list", {"PartyPath": "Nope"})) == "1310"


async def test_user_check_types_and_limit(raw: Any) -> None:
    emails = ["bob@example.com", "zhangwei.alias@example.com", "all@example.com",
              "free@example.com", "bad name", "x@other.org"]  # fmt: skip
    body = await raw.call("user/check", [("email", e) for e in emails])
    assert [e["Type"] for e in body["List"]] == [1, 2, 3, 0, -1, -1]
    assert body["Count"] == 6
    assert (
        err(await raw.call("user/check", [("email", f"u{i}@example.com") for i in range(21)]))
        == "1001"
    )
    assert err(await raw.call("user/check", {})) == "1001"


async def test_groups(raw: Any) -> None:
    add = [("group_name", "Team"), ("group_admin", "team@example.com"), ("status", "list"),
           ("members", "bob@example.com"), ("members", "alice@example.com")]  # fmt: skip
    assert await raw.call("group/add", add) is None
    group = raw.emu.state.companies[ADMIN].groups["team@example.com"]
    assert group.members == ["bob@example.com", "alice@example.com"]
    add_member = {"group_alias": "team@example.com", "members": "carol@example.com"}
    assert await raw.call("group/addmember", add_member) is None
    del_member = {"group_alias": "team@example.com", "members": "bob@example.com"}
    assert await raw.call("group/deletemember", del_member) is None
    assert group.members == ["alice@example.com", "carol@example.com"]
    allow = {"group_alias": "team@example.com", "allow_list": "a@x.com,b@x.com"}
    assert await raw.call("group/addallowlist", allow) is None
    assert group.allow_list == ["a@x.com", "b@x.com"]
    assert (
        await raw.call(
            "group/delallowlist", {"group_alias": "team@example.com", "allow_list": "a@x.com"}
        )
        is None
    )
    emptying = {"group_alias": "team@example.com", "allow_list": "b@x.com"}
    assert err(await raw.call("group/delallowlist", emptying)) == "1001"
    assert (await raw.call("user/check", [("email", "team@example.com")]))["List"][0]["Type"] == 3
    assert await raw.call("group/delete", {"group_alias": "team@example.com"}) is None
    assert err(await raw.call("group/delete", {"group_alias": "team@example.com"})) == "1401"


@pytest.mark.parametrize(
    ("operation", "params", "code"),
    [
        ("group/add", {"group_admin": "g@example.com", "status": "all"}, "1001"),  # no name
        ("group/add", {"group_name": "G", "status": "all"}, "1001"),  # no admin
        (
            "group/add",
            {"group_name": "G", "group_admin": "g@example.com", "status": "open"},
            "1001",
        ),
        ("group/add", {"group_name": "G", "group_admin": "bad", "status": "all"}, "1001"),
        ("group/add", {"group_name": "G", "group_admin": "g@other.org", "status": "all"}, "1001"),
        (
            "group/add",
            {"group_name": "G", "group_admin": "bob@example.com", "status": "all"},
            "1500",
        ),
        (
            "group/add",
            {"group_name": "G", "group_admin": "all@example.com", "status": "all"},
            "1500",
        ),
        (
            "group/add",
            {
                "group_name": "G",
                "group_admin": "g@example.com",
                "status": "all",
                "members": "ghost@example.com",
            },
            "1400",
        ),
        ("group/delete", {}, "1001"),
        ("group/delete", {"group_alias": "nope@example.com"}, "1401"),
        (
            "group/addmember",
            {"group_alias": "all@example.com", "members": "ghost@example.com"},
            "1400",
        ),
        ("group/addmember", {"group_alias": "all@example.com"}, "1001"),
        (
            "group/deletemember",
            {"group_alias": "nope@example.com", "members": "bob@example.com"},
            "1401",
        ),
        ("group/addallowlist", {"group_alias": "all@example.com", "allow_list": "a@x.com"}, "1001"),
        ("group/delallowlist", {"group_alias": "all@example.com", "allow_list": "a@x.com"}, "1001"),
        ("user/openwxtoken", {"alias": "ghost@example.com"}, "1400"),
        ("user/closewxtoken", {"alias": "ghost@example.com"}, "1400"),
        ("user/openwxtoken", {}, "1001"),
        ("mail/authkey", {"Alias": "ghost@example.com"}, "1400"),
    ],
)
async def test_group_and_misc_rules(
    raw: Any, operation: str, params: dict[str, str], code: str
) -> None:
    assert err(await raw.call(operation, params)) == code


async def test_allow_list_entries_must_be_addresses(raw: Any) -> None:
    add = {"group_name": "L", "group_admin": "l@example.com", "status": "list"}
    assert await raw.call("group/add", add) is None
    bad = {"group_alias": "l@example.com", "allow_list": "a@x.com,nope"}
    assert err(await raw.call("group/addallowlist", bad)) == "1001"


async def test_wx_token(raw: Any) -> None:
    account = raw.emu.state.companies[ADMIN].accounts["bob@example.com"]
    assert await raw.call("user/openwxtoken", {"alias": "bob@example.com"}) is None
    assert account.wx_token is True
    assert await raw.call("user/closewxtoken", {"alias": "bob@example.com"}) is None
    assert account.wx_token is False


async def test_other_company_accounts_are_invisible(raw: Any) -> None:
    company = {"admin": "boss@acme.test", "key": "k", "domains": ["acme.test"],
               "users": [{"alias": "wile@acme.test"}]}  # fmt: skip
    status, _ = await raw.control("company", company)
    assert status == 200
    assert err(await raw.call("user/get", {"Alias": "wile@acme.test"})) == "1400"
    assert err(await raw.call("user/sync", {"Action": "2", "Alias": "x@acme.test"})) == "1001"
