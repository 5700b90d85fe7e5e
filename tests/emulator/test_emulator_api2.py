"""The emulator's second API over raw loopback HTTP: gettoken and per-app tokens, the error
shape, 64-bit ids on the wire, the login page, faults, and the ``/_emulator/api2/`` control
routes with the ``on_mail`` / ``on_unread`` seams."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from relay.emulator import Emulator, EmulatorSeedError, parse_seed
from relay.emulator._api2seed import API2_APPS

CORPID = "wwdemo0000000001"
SECRET = {app: f"demo-{app}-secret" for app in API2_APPS}
RD = 4913577855806636138
ROOT = Path(__file__).resolve().parents[2]


class Api2:
    def __init__(self, emu: Emulator, session: aiohttp.ClientSession) -> None:
        self.emu, self.session = emu, session

    async def gettoken(self, app: str = "directory", **query: str) -> dict[str, Any]:
        params = {"corpid": CORPID, "corpsecret": SECRET[app], **query}
        async with self.session.get(self.emu.api2_url + "gettoken", params=params) as resp:
            assert resp.status == 200
            result: dict[str, Any] = await resp.json()
            return result

    async def token(self, app: str = "directory") -> str:
        return str((await self.gettoken(app))["access_token"])

    async def raw(
        self, op: str, token: str | None, *, body: Any = None, method: str = "GET", **query: Any
    ) -> tuple[int, bytes]:
        params = {k: str(v) for k, v in query.items()}
        if token is not None:
            params["access_token"] = token
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body))
        async with self.session.request(
            method, self.emu.api2_url + op, params=params, data=data
        ) as resp:
            return resp.status, await resp.read()

    async def call(self, op: str, app: str = "directory", **kw: Any) -> dict[str, Any]:
        status, raw = await self.raw(op, await self.token(app), **kw)
        assert status == 200, raw
        result: dict[str, Any] = json.loads(raw)
        return result

    async def control(self, path: str, body: Any = None, method: str = "POST") -> tuple[int, Any]:
        url = self.emu.control_url + path
        async with self.session.request(method, url, json=body) as resp:
            return resp.status, await resp.json()


@pytest.fixture
async def api2(emu: Emulator, session: aiohttp.ClientSession) -> Api2:
    return Api2(emu, session)


async def test_gettoken_per_app_and_its_refusals(api2: Api2) -> None:
    answer = await api2.gettoken()
    assert answer["errcode"] == 0 and answer["errmsg"] == "ok"
    assert answer["expires_in"] == 7200 and len(answer["access_token"]) >= 64
    assert await api2.token() == answer["access_token"]  # reuse_until_expiry: the same one
    assert await api2.token("sso") != answer["access_token"]
    assert await api2.gettoken(corpsecret="nope") == {
        "errcode": 40001,
        "errmsg": "invalid credential",
    }
    assert (await api2.gettoken(corpid="ww-unknown"))["errcode"] == 40001
    assert (await api2.gettoken(corpid=""))["errcode"] == 41002
    state = api2.emu.api2.snapshot()["tenants"][0]
    assert state["token_fetches"]["directory"] == 2
    assert "demo-directory-secret" not in json.dumps(state)


async def test_invalidate_previous_ends_the_previous_token(session: aiohttp.ClientSession) -> None:
    async with Emulator(port=0, token_rotation="invalidate_previous") as emu:
        api2 = Api2(emu, session)
        first, second = await api2.token(), await api2.token()
        assert first != second
        _, body = await api2.raw("user/get", first, userid="lisi@example.org")
        assert json.loads(body) == {"errcode": 40014, "errmsg": "invalid access_token"}
        _, body = await api2.raw("user/get", second, userid="lisi@example.org")
        assert json.loads(body)["errcode"] == 0


async def test_tokens_work_only_on_their_apps_endpoints(api2: Api2) -> None:
    sso = await api2.token("sso")
    for op, query in (("user/get", {"userid": "lisi@example.org"}), ("mail/newcount", {})):
        _, body = await api2.raw(op, sso, **query)
        assert json.loads(body) == {"errcode": 48002, "errmsg": "api forbidden"}
    _, body = await api2.raw("service/get_login_url", sso, userid="lisi@example.org")
    assert json.loads(body)["errcode"] == 0
    assert json.loads((await api2.raw("user/get", None))[1])["errcode"] == 41001
    assert json.loads((await api2.raw("user/get", "forged"))[1])["errcode"] == 40014
    status, expired = await api2.control("api2/tokens/expire", {"corpid": CORPID, "app": "sso"})
    assert (status, expired) == (200, {"expired": 1})
    _, body = await api2.raw("service/get_login_url", sso, userid="lisi@example.org")
    assert json.loads(body) == {"errcode": 42001, "errmsg": "access_token expired"}
    assert await api2.token("sso") != sso  # an expired token is replaced


async def test_error_shape_methods_and_unknown_paths(api2: Api2) -> None:
    token = await api2.token()
    status, body = await api2.raw("user/get", token, userid="ghost@example.org")
    assert status == 200
    answer = json.loads(body)
    assert answer == {"errcode": 60111, "errmsg": "userid not found"}
    assert type(answer["errcode"]) is int
    assert json.loads((await api2.raw("department/create", token))[1])["errcode"] == 43002
    bad = await api2.raw("department/create", token, method="POST", body=b"{nope")
    assert json.loads(bad[1])["errcode"] == 47001
    status, _ = await api2.raw("nothing/here", token)
    assert status == 404
    ok = await api2.call("department/create", method="POST", body={"name": "X", "parentid": 1})
    assert (ok["errcode"], ok["errmsg"]) == (0, "created")


async def test_department_ids_are_exact_on_the_wire(api2: Api2) -> None:
    status, raw = await api2.raw("department/list", await api2.token())
    assert status == 200
    assert f'"id":{RD},' in raw.decode()  # the exact digits, a JSON integer
    departments = json.loads(raw)["department"]
    assert [d["id"] for d in departments][:2] == [1, RD]
    assert all(d["id"] > 2**53 for d in departments[1:])
    scoped = await api2.call("department/list", id=RD)
    assert [d["parentid"] for d in scoped["department"]] == [1, RD]  # itself, then children


async def test_newcount_reads_the_query_then_a_json_body(api2: Api2) -> None:
    token = await api2.token("newmail")
    _, body = await api2.raw(
        "mail/newcount",
        token,
        method="POST",
        body={"begin_date": "2001-01-01", "end_date": "2001-01-02"},
        userid="lisi@example.org",
    )
    assert json.loads(body) == {"errcode": 0, "errmsg": "ok", "count": 0}
    _, body = await api2.raw("mail/newcount", token, userid="lisi@example.org")
    assert json.loads(body)["count"] == 1  # the demo seed's unread mail


async def test_the_login_page_takes_a_key_once_and_only_its_member(api2: Api2) -> None:
    answer = await api2.call("service/get_login_url", "sso", userid="amy@example.org")
    url = answer["login_url"]
    assert answer["expires_in"] == 300
    wrong = url.replace("userid=amy@example.org", "userid=ben@example.org")
    async with api2.session.get(wrong) as resp:
        assert resp.status == 403 and "not the member" in await resp.text()
    async with api2.session.get(url) as resp:
        assert resp.status == 200 and "amy@example.org" in await resp.text()
    async with api2.session.get(url) as resp:
        assert resp.status == 403 and "already used" in await resp.text()
    bad = url.replace("authkey=", "authkey=x")
    async with api2.session.get(bad) as resp:
        assert resp.status == 403 and "unknown authkey" in await resp.text()


async def test_an_expired_login_key_is_refused(session: aiohttp.ClientSession) -> None:
    async with Emulator(port=0, login_ttl=0.0) as emu:
        api2 = Api2(emu, session)
        url = (await api2.call("service/get_login_url", "sso", userid="amy@example.org"))[
            "login_url"
        ]
        async with session.get(url) as resp:
            assert resp.status == 403 and "expired" in await resp.text()


async def test_faults_answer_in_the_second_apis_shape(api2: Api2) -> None:
    token = await api2.token()
    path = "/cgi-bin/user/get"
    await api2.control("faults", {"kind": "errcode_1002", "path": path})
    await api2.control("faults", {"kind": "api_error", "path": path, "errcode": 45009})
    await api2.control("faults", {"kind": "api_error", "path": path, "errcode": "40001"})
    await api2.control("faults", {"kind": "invalid_token", "path": path})
    answers = [
        json.loads((await api2.raw("user/get", token, userid="lisi@example.org"))[1])
        for _ in range(4)
    ]
    assert [a["errcode"] for a in answers] == [-1, 45009, "40001", 40014]
    assert json.loads((await api2.raw("user/get", token, userid="lisi@example.org"))[1]) == {
        "errcode": 40014,  # the invalid_token fault really ended the token
        "errmsg": "invalid access_token",
    }
    _, state = await api2.control("state", method="GET")
    assert state["requests"]["/cgi-bin/user/get"] == 5
    assert state["requests"]["/cgi-bin/gettoken"] == 1


async def test_control_mail_and_read_call_the_seams(api2: Api2) -> None:
    tenant = api2.emu.api2.tenants[CORPID]
    mails: list[dict[str, Any]] = []
    unread: list[dict[str, Any]] = []
    everywhere: list[dict[str, Any]] = []
    tenant.on_mail.append(mails.append)
    tenant.on_unread.append(unread.append)
    api2.emu.api2.on_mail.append(everywhere.append)
    status, delivered = await api2.control(
        "api2/mail",
        {
            "to": "ben@example.org",
            "from": '"a@x.com"<a@x.com>',
            "title": "邮件到达了",
            "time": 1610007415,
        },
    )
    assert status == 200
    assert (
        mails
        == everywhere
        == [
            {
                "CorpID": CORPID,
                "MailID": delivered["mail_id"],
                "ToUserID": "ben@example.org",
                "FromUser": '"a@x.com"<a@x.com>',
                "Title": "邮件到达了",
                "Time": 1610007415,
                "NewCount": delivered["count"],
            }
        ]
    )
    assert len(delivered["mail_id"]) == 44
    newcount = await api2.call("mail/newcount", "newmail", userid="ben@example.org")
    assert newcount["count"] == delivered["count"]
    status, read = await api2.control("api2/read", {"user": "ben@example.org", "count": 5})
    assert read == {"user": "ben@example.org", "unread": 0}
    assert [(u["CorpID"], u["UserID"], u["UnReadCount"]) for u in unread] == [
        (CORPID, "ben@example.org", 0)
    ]
    assert isinstance(unread[0]["Time"], int)
    status, bulk = await api2.control("api2/mail", {"mails": [{"to": "amy@example.org"}] * 2})
    assert [m["count"] for m in bulk["mails"]] == [1, 2]
    assert (await api2.control("api2/mail", {"to": "ghost@example.org"}))[0] == 404


async def test_control_directory_routes_use_the_api_rules(api2: Api2) -> None:
    status, made = await api2.control("api2/department", {"action": "add", "name": "Ops"})
    assert status == 200 and made["id"] > 2**53
    ident = made["id"]
    assert (await api2.control("api2/department", {"action": "mod", "id": ident, "name": "SRE"}))[
        0
    ] == 200
    status, _ = await api2.control(
        "api2/user", {"action": "add", "userid": "new@example.org", "department": [ident]}
    )
    assert status == 200
    member = await api2.call("user/get", userid="new@example.org")
    assert (member["name"], member["department"]) == ("new", [ident])
    status, refused = await api2.control("api2/department", {"action": "del", "id": ident})
    assert (status, refused["errcode"]) == (400, 60005)
    assert (await api2.control("api2/user", {"action": "del", "userid": "new@example.org"}))[
        0
    ] == 200
    assert (await api2.control("api2/department", {"action": "del", "id": ident}))[0] == 200
    status, missing = await api2.control(
        "api2/user", {"action": "mod", "userid": "new@example.org"}
    )
    assert (status, missing["errcode"]) == (404, 60111)
    assert (await api2.control("api2/user", {"action": "zap", "userid": "x@example.org"}))[0] == 400
    operations = [e["type"] for e in api2.emu.api2.tenants[CORPID].operations]
    assert operations == [28, 30, 19, 20, 29]


async def test_control_tenants_settings_state_and_reset(api2: Api2) -> None:
    spec = {
        "corpid": "wwnew",
        "secrets": {"directory": "d-secret", "newmail": "n-secret"},
        "domains": ["new.test"],
        "departments": ["A/B"],
        "users": [{"userid": "u@new.test", "departments": ["A/B"], "unread": 2}],
    }
    assert await api2.control("api2/tenant", spec) == (200, {"added": 1})
    status, again = await api2.control("api2/tenant", spec)
    assert status == 400 and "exists" in again["error"]
    status, bad = await api2.control("api2/tenant", {**spec, "secrets": {"mail": "x"}})
    assert status == 400 and "tenants[0].secrets: unknown app(s) ['mail']" in bad["error"]
    assert (await api2.control("api2/settings", {"token_rotation": "sometimes"}))[0] == 400
    status, settings = await api2.control(
        "api2/settings", {"token_rotation": "invalidate_previous"}
    )
    assert settings["token_rotation"] == "invalidate_previous"
    status, state = await api2.control("api2/state", method="GET")
    new = next(t for t in state["tenants"] if t["corpid"] == "wwnew")
    assert [d["path"] for d in new["departments"]] == ["", "A", "A/B"]
    assert new["members"] == [{"userid": "u@new.test", "name": "u", "unread": 2}]
    assert new["secrets"] == {"directory": "d-se…", "newmail": "n-se…"}
    await api2.control("reset", {})
    assert list(api2.emu.api2.tenants) == [CORPID]
    await api2.control("reset", {"empty": True})
    assert api2.emu.api2.tenants == {}


def test_seed_files_carry_second_api_tenants() -> None:
    seed = parse_seed({"api2": [{"corpid": "ww1", "secrets": {"sso": "s"}, "domains": ["a.test"]}]})
    assert seed.companies == () and seed.api2[0].secrets == {"sso": "s"}
    problems = {
        "missing required key(s) ['companies']": {},
        "api2[0].secrets: each app needs its own secret": {
            "api2": [{"corpid": "w", "secrets": {"sso": "s", "logs": "s"}, "domains": ["a.test"]}]
        },
        "api2[0].users[0].departments[0]": {
            "api2": [
                {
                    "corpid": "w",
                    "secrets": {"sso": "s"},
                    "domains": ["a.test"],
                    "users": [{"userid": "u@a.test", "departments": ["Nowhere"]}],
                }
            ]
        },
        "domain 'example.com' belongs to two tenants": {
            "companies": [{"admin": "a@example.com", "key": "k", "domains": ["example.com"]}],
            "api2": [{"corpid": "w", "secrets": {"sso": "s"}, "domains": ["example.com"]}],
        },
    }
    for message, data in problems.items():
        with pytest.raises(EmulatorSeedError, match=re.escape(message)):
            parse_seed(data)


async def test_cli_serves_the_second_api_with_its_rotation(session: aiohttp.ClientSession) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relay", "emulator", "--port", "0",
        "--token-rotation", "invalidate_previous", "--companies", "1",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        match = re.search(r"control (\S+) api2 (\S+)", line)
        assert match, line
        params = {"corpid": CORPID, "corpsecret": SECRET["directory"]}
        tokens = []
        for _ in range(2):
            async with session.get(match.group(2) + "gettoken", params=params) as resp:
                tokens.append((await resp.json())["access_token"])
        assert tokens[0] != tokens[1]  # --companies kept the demo's second-API tenant
        query = {"access_token": tokens[0], "userid": "lisi@example.org"}
        async with session.get(match.group(2) + "user/get", params=query) as resp:
            assert (await resp.json())["errcode"] == 40014
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)
    assert proc.returncode == 0
