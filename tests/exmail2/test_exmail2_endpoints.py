"""Every operation of ``Exmail2Client`` against the real emulator over loopback."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import aiohttp
import pytest

from relay.emulator import Emulator
from relay.exmail import (
    AccountType,
    ApiError,
    Conflict,
    Gender,
    InvalidRequest,
    NotFound,
)
from relay.exmail2 import AllowType, Exmail2Client
from tests.exmail2.conftest import Control

RD = 4913577855806636138  # 广州研发中心 in the demo tenant: the first id the emulator issues
TODAY = dt.date.today()
WEEK = (TODAY - dt.timedelta(days=7), TODAY + dt.timedelta(days=7))


async def test_departments(client: Exmail2Client) -> None:
    tree = await client.department_list()
    assert [d.id for d in tree][:2] == [1, RD]
    assert all(d.id > 2**53 for d in tree[1:])
    new = await client.department_create("新部门", RD, order=20000)
    assert new > 2**53
    sub = await client.department_create("小组", new)
    scoped = await client.department_list(new)
    assert [(d.id, d.parentid) for d in scoped] == [(new, RD), (sub, new)]
    await client.department_update(sub, name="大组", parentid=1, order=30000)
    found = await client.department_search("大组")
    assert [(d.id, d.parentid, d.path, d.order) for d in found] == [(sub, 0, "大组", 30000)]
    fuzzy = await client.department_search("部", fuzzy=True)
    assert {d.path for d in fuzzy} >= {"广州研发中心/新部门", "广州研发中心/邮箱产品部", "销售部"}
    with pytest.raises(Conflict) as caught:
        await client.department_create("大组", 1)
    assert caught.value.errcode == "60008"
    await client.department_delete(sub)
    with pytest.raises(NotFound):
        await client.department_list(sub)
    with pytest.raises(ApiError) as root:
        await client.department_delete(1)
    assert root.value.errcode == "60007"


async def test_members(client: Exmail2Client) -> None:
    new = await client.department_create("Ops", 1, order=20001)
    await client.user_create(
        "ops@example.org",
        "运维",
        [new, RD],
        "Passw0rd",
        position="SRE",
        mobile="13900000099",
        extid="07",
        gender=Gender.FEMALE,
        slaves=["ops.alias@example.org"],
        cpwd_login=1,
    )
    member = await client.user_get("ops@example.org")
    assert member.department == (new, RD)
    assert (member.name, member.gender, member.extid, member.slaves, member.cpwd_login) == (
        "运维",
        Gender.FEMALE,
        "07",
        ("ops.alias@example.org",),
        1,
    )
    await client.user_update("ops@example.org", enable=False, position="Lead", department=[new])
    member = await client.user_get("ops.alias@example.org")  # an alias finds its member
    assert (member.enable, member.position, member.department) == (0, "Lead", (new,))
    brief = await client.user_simplelist(new)
    assert [(b.userid, b.department) for b in brief] == [("ops@example.org", (new,))]
    everyone = await client.user_list(1, fetch_child=True)
    assert "ops@example.org" in {m.userid for m in everyone}
    assert len(everyone) == 6
    assert len(await client.user_list(RD)) == 1  # lisi only: no children without fetch_child
    checks = await client.user_batchcheck(
        ["ops@example.org", "ops.alias@example.org", "all@example.org", "free@example.org"]
        + ["nope"]
        + [f"u{i}@example.org" for i in range(20)]  # 25 addresses: two calls
    )
    assert [c.type for c in checks[:5]] == [
        AccountType.PRIMARY,
        AccountType.ALIAS,
        AccountType.GROUP,
        AccountType.FREE,
        AccountType.INVALID,
    ]
    assert len(checks) == 25
    with pytest.raises(Conflict):
        await client.user_create("ops@example.org", "again", [1], "Passw0rd")
    await client.user_delete("ops@example.org")
    with pytest.raises(NotFound) as caught:
        await client.user_get("ops@example.org")
    assert caught.value.errcode == "60111"


async def test_groups(client: Exmail2Client) -> None:
    await client.group_create(
        "team@example.org",
        "Team",
        AllowType.LISTED,
        userlist=["lisi@example.org"],
        grouplist=["all@example.org"],
        department=[RD],
        allow_userlist=["ben@example.org"],
    )
    group = await client.group_get("team@example.org")
    assert (group.groupname, group.allow_type, group.department) == (
        "Team",
        AllowType.LISTED,
        (RD,),
    )
    assert (group.userlist, group.grouplist, group.allow_userlist) == (
        ("lisi@example.org",),
        ("all@example.org",),
        ("ben@example.org",),
    )
    await client.group_update("team@example.org", groupname="Team 2", userlist=["amy@example.org"])
    group = await client.group_get("team@example.org")
    assert (group.groupname, group.userlist) == ("Team 2", ("amy@example.org",))
    await client.group_delete("team@example.org")
    with pytest.raises(NotFound):
        await client.group_get("team@example.org")


async def test_tags(client: Exmail2Client) -> None:
    tagid = await client.tag_create("乒乓球协会")
    assert await client.tag_create("羽毛球", tagid=50) == 50
    change = await client.tag_add_users(
        tagid, userlist=["lisi@example.org", "ghost@example.org"], partylist=[RD, 999]
    )
    assert (change.invalidlist, change.invalidparty) == (("ghost@example.org",), (999,))
    members = await client.tag_get(tagid)
    assert members.tagname == "乒乓球协会"
    assert [(m.userid, m.name) for m in members.userlist] == [("lisi@example.org", "李四")]
    assert members.partylist == (RD,)
    with pytest.raises(ApiError) as all_bad:
        await client.tag_add_users(tagid, userlist=["ghost@example.org"])
    assert all_bad.value.errcode == "40070"
    removed = await client.tag_delete_users(tagid, partylist=[RD])
    assert removed.invalidparty == ()
    assert (await client.tag_get(tagid)).partylist == ()
    with pytest.raises(ApiError) as none_left:
        await client.tag_delete_users(tagid, partylist=[RD])
    assert none_left.value.errcode == "40031"
    await client.tag_update(tagid, "乒协")
    assert {(t.tagid, t.tagname) for t in await client.tag_list()} == {
        (tagid, "乒协"),
        (50, "羽毛球"),
    }
    await client.tag_delete(50)
    assert [t.tagid for t in await client.tag_list()] == [tagid]


async def test_login_url_is_one_time(client: Exmail2Client) -> None:
    answer = await client.get_login_url("amy@example.org")
    assert answer.expires_in == 300
    assert "method=openapi" in answer.login_url
    assert "userid=amy@example.org" in answer.login_url
    async with aiohttp.ClientSession() as session:
        async with session.get(answer.login_url) as first:
            assert first.status == 200
            assert "<h1 id='account'>amy@example.org</h1>" in await first.text()
        async with session.get(answer.login_url) as second:
            assert second.status == 403
            assert "already used" in await second.text()
    logins = await client.log_login("amy@example.org", *WEEK)
    assert [e.type for e in logins] == [1]


async def test_newcount_follows_delivered_and_read_mail(
    client: Exmail2Client, control: Control
) -> None:
    before = await client.mail_newcount("ben@example.org")
    delivered = await control.post(
        "api2/mail", {"to": "ben@example.org", "from": "x@y.com", "title": "Hi"}
    )
    assert delivered["count"] == before + 1
    assert await client.mail_newcount("ben@example.org") == before + 1
    assert await client.mail_newcount("ben@example.org", begin_date=TODAY, end_date=TODAY) >= 1
    assert (
        await client.mail_newcount(
            "ben@example.org", begin_date="2001-01-01", end_date="2001-01-02"
        )
        == 0
    )
    await control.post("api2/read", {"user": "ben@example.org", "count": 1})
    assert await client.mail_newcount("ben@example.org") == before


async def test_logs(client: Exmail2Client, control: Control) -> None:
    await control.post("api2/mail", {"to": "amy@example.org", "from": "lisi@example.org"})
    status = await client.log_mailstatus("example.org", *WEEK)
    assert (status.sendsum, status.recvsum) == (1, 1)
    mails = await client.log_mail(*WEEK, mailtype=2, userid="amy@example.org")
    assert [(m.receiver, m.status, m.mailtype) for m in mails] == [("amy@example.org", 13, 2)]
    assert await client.log_mail(*WEEK, mailtype=1) == []
    await client.user_update("amy@example.org", position="Lead")
    operations = await client.log_operation(*WEEK)
    assert [(o.type, o.operand) for o in operations] == [(23, "amy@example.org")]
    assert await client.log_operation(*WEEK, type=0) == operations  # 0 and 1 both mean all
    assert await client.log_batchjob(*WEEK) == []
    with pytest.raises(ApiError) as too_long:
        await client.log_batchjob("2024-01-01", "2024-12-31")
    assert too_long.value.errcode == "601002"


async def test_useroptions(client: Exmail2Client) -> None:
    options = await client.useroption_get("lisi@example.org")
    assert [(o.type, o.value) for o in options] == [(1, "0"), (2, "1"), (3, "1"), (4, "0")]
    await client.useroption_update("lisi@example.org", {1: True, 3: "0"})
    options = await client.useroption_get("lisi@example.org", [1, 3])
    assert [(o.type, o.value) for o in options] == [(1, "1"), (3, "0")]


async def test_raw_call_and_what_is_refused_before_sending(
    client: Exmail2Client, control: Control
) -> None:
    answer = await client.call("/cgi-bin/user/get", query={"userid": "lisi@example.org"})
    assert (answer["errcode"], answer["name"], answer["gender"]) == (0, "李四", "2")
    created = await client.call("department/create", body={"name": "Raw", "parentid": 1})
    assert created["id"] > 2**53 and created["errmsg"] == "created"
    sent = await control.requests("/cgi-bin/user/get")
    with pytest.raises(InvalidRequest):
        await client.call("listen")
    with pytest.raises(InvalidRequest):
        await client.user_get("not an address")
    assert await control.requests("/cgi-bin/user/get") == sent


async def test_ids_above_2_53_survive_a_second_tenant(
    emulator: Emulator, make_client: Callable[..., Exmail2Client]
) -> None:
    ident = 2**63 - 25
    seed = {
        "corpid": "wwbig",
        "secrets": {"directory": "big-secret"},
        "domains": ["big.test"],
        "departments": [{"path": "Top", "id": ident}],
        "users": [{"userid": "u@big.test", "departments": ["Top"]}],
    }
    url = emulator.control_url + "api2/tenant"
    async with aiohttp.ClientSession() as session, session.post(url, json=seed) as resp:
        assert resp.status == 200, await resp.text()
    client = make_client(corpid="wwbig", secrets={"directory": "big-secret"})
    assert [d.id for d in await client.department_list(ident)] == [ident]
    assert (await client.user_get("u@big.test")).department == (ident,)
    with pytest.raises(InvalidRequest, match="no secret configured for the sso"):
        await client.get_login_url("u@big.test")
