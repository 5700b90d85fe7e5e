"""The control API, injected faults, SSO login, seeds and the CLI command."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from relay.emulator import Emulator, EmulatorSeedError, load_seed
from tests.emulator.conftest import WAIT, held

ADMIN = "admin@example.com"
ROOT = Path(__file__).resolve().parents[2]


# -- faults ---------------------------------------------------------------------------------


async def test_fault_http_500_counts_down(raw: Any) -> None:
    status, _ = await raw.control("faults", {"kind": "http_500", "count": 2})
    assert status == 200
    for _ in range(2):
        status, _ = await raw.call_raw("mail/newcount", {"Alias": "bob@example.com"})
        assert status == 500
    status, body = await raw.call_raw("mail/newcount", {"Alias": "bob@example.com"})
    assert status == 200
    assert json.loads(body)["Alias"] == "bob@example.com"


async def test_fault_errcode_1002_on_a_path_prefix(raw: Any) -> None:
    await raw.control("faults", {"kind": "errcode_1002", "count": 1, "path": "/openapi/listen"})
    assert "Alias" in await raw.call("mail/newcount", {"Alias": "bob@example.com"})  # not matched
    assert await raw.call("listen", {"Ver": "0"}) == {
        "errcode": "1002",
        "error": "temporarily_unavailable",
    }


async def test_fault_invalid_token_invalidates(raw: Any) -> None:
    await raw.control("faults", {"kind": "invalid_token", "count": 1})
    assert (await raw.call("user/get", {"Alias": "bob@example.com"}))["errcode"] == "1200"
    assert (await raw.call("user/get", {"Alias": "bob@example.com"}))["errcode"] == "1200"
    await raw.fetch_token()
    assert (await raw.call("user/get", {"Alias": "bob@example.com"}))["Alias"] == "bob@example.com"


async def test_fault_on_the_token_endpoint(raw: Any) -> None:
    await raw.control("faults", {"kind": "http_500", "count": 1, "path": "/cgi-bin/token"})
    data = {
        "grant_type": "client_credentials",
        "client_id": ADMIN,
        "client_secret": "exmail-demo-key",
    }
    async with raw.session.post(raw.emu.token_url, data=data) as resp:
        assert resp.status == 500
    assert (await raw.call("user/get", {"Alias": "bob@example.com"}))["Alias"] == "bob@example.com"
    assert await raw.fetch_token()


async def test_fault_drop_cuts_the_connection(raw: Any) -> None:
    await raw.control("faults", {"kind": "drop", "count": 1})
    with pytest.raises(aiohttp.ClientPayloadError):
        await raw.call_raw("user/get", {"Alias": "bob@example.com"})
    assert (await raw.call("user/get", {"Alias": "bob@example.com"}))["Alias"] == "bob@example.com"


async def test_fault_delay(raw: Any) -> None:
    await raw.control("faults", {"kind": "delay", "count": 1, "seconds": 0.3})
    started = time.monotonic()
    assert "Alias" in await raw.call("user/get", {"Alias": "bob@example.com"})
    assert time.monotonic() - started >= 0.3


async def test_fault_malformed(raw: Any) -> None:
    await raw.control("faults", {"kind": "malformed", "count": 1})
    status, body = await raw.call_raw("user/get", {"Alias": "bob@example.com"})
    assert status == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)


async def test_faults_clear_and_bad_specs(raw: Any) -> None:
    await raw.control("faults", {"kind": "http_500", "count": 5})
    status, body = await raw.control("faults", method="DELETE")
    assert (status, body) == (200, {"faults": []})
    assert "Alias" in await raw.call("user/get", {"Alias": "bob@example.com"})
    for bad in (
        {"kind": "boom"},
        {"kind": "delay", "count": 1},
        {"kind": "http_500", "count": 0},
        {"kind": "http_500", "path": "/_emulator/state"},
        [1, 2],
    ):
        status, body = await raw.control("faults", bad)
        assert status == 400, bad
        assert body["error"]


async def test_counters_show_requests_per_path(raw: Any) -> None:
    for _ in range(3):
        await raw.call("listen", {"Ver": "0"})
    _, state = await raw.control("state", method="GET")
    assert state["requests"]["/openapi/listen"] == 3
    assert state["requests"]["/cgi-bin/token"] == 1


# -- control API ------------------------------------------------------------------------------


async def test_state_masks_secrets(raw: Any) -> None:
    status, state = await raw.control("state", method="GET")
    assert status == 200
    text = json.dumps(state)
    assert "exmail-demo-key" not in text
    assert raw.token not in text
    company = state["companies"][0]
    assert company["admin"] == ADMIN
    assert company["ver"] == raw.emu.state.companies[ADMIN].ver
    assert len(company["accounts"]) == 20
    assert {"pending", "dropped", "listening"} <= set(company)
    assert state["open_listens"] == 0


async def test_control_mail_errors(raw: Any) -> None:
    status, body = await raw.control("mail", {"to": "ghost@example.com"})
    assert status == 404
    assert "ghost@example.com" in body["error"]
    status, _ = await raw.control("mail", {"to": "x@unknown-domain.org"})
    assert status == 404
    status, _ = await raw.control("mail", {})
    assert status == 400
    async with raw.session.post(raw.emu.base_url + "/_emulator/mail", data=b"{nope") as resp:
        assert resp.status == 400
        assert "JSON" in (await resp.json())["error"]


async def test_mail_to_a_slave_address_reaches_the_account(raw: Any) -> None:
    before = raw.emu.state.companies[ADMIN].accounts["zhangwei@example.com"].unread
    status, _ = await raw.control("mail", {"to": "zhangwei.alias@example.com"})
    assert status == 200
    assert raw.emu.state.companies[ADMIN].accounts["zhangwei@example.com"].unread == before + 1


async def test_control_user_and_party_bump_ver(raw: Any) -> None:
    ver = raw.emu.state.companies[ADMIN].ver
    status, body = await raw.control(
        "user",
        {"action": "add", "alias": "new@example.com", "name": "新人", "parties": ["Finance"]},
    )
    assert status == 200
    assert body["ver"] > ver
    got = await raw.call("user/get", {"Alias": "new@example.com"})
    assert got["Name"] == "新人"
    status, body = await raw.control("party", {"action": "add", "path": "Finance/Audit"})
    assert status == 200
    status, _ = await raw.control(
        "party", {"action": "mod", "path": "Finance/Audit", "dst": "Audit"}
    )
    assert status == 200
    assert "Audit" in raw.emu.state.companies[ADMIN].parties
    listed = await raw.call("user/list", {"Ver": str(ver)})
    assert listed["List"] == [{"Action": 1, "Alias": "new@example.com"}]
    status, _ = await raw.control("user", {"action": "del", "alias": "ghost@example.com"})
    assert status == 404
    status, _ = await raw.control("user", {"action": "zap", "alias": "new@example.com"})
    assert status == 400
    status, _ = await raw.control("party", {"action": "del", "path": "Nope"})
    assert status == 404


async def test_control_company_and_reset(raw: Any) -> None:
    users = [{"alias": "wile@acme.test", "parties": ["HQ"]}]
    company = {"admin": "boss@acme.test", "key": "acme-key", "domains": ["acme.test"],
               "parties": ["HQ"], "users": users}  # fmt: skip
    status, body = await raw.control("company", company)
    assert (status, body) == (200, {"added": 1})
    status, body = await raw.control("company", company)
    assert status == 400
    status, body = await raw.control("company", {"admin": "x@y.test"})
    assert status == 400
    assert "key" in body["error"]
    acme = raw.__class__(raw.emu, raw.session)
    await acme.fetch_token("boss@acme.test", "acme-key")
    assert (await acme.call("partyuser/list", {"PartyPath": "HQ"}))["Count"] == 1
    await raw.control("user", {"action": "del", "alias": "bob@example.com"})
    status, body = await raw.control("reset", {})
    assert (status, body) == (200, {"companies": 1})
    assert "bob@example.com" in raw.emu.state.companies[ADMIN].accounts
    assert (await raw.call("user/get", {"Alias": "bob@example.com"}))["errcode"] == "1200"
    status, body = await raw.control("reset", {"empty": True})
    assert body == {"companies": 0}


async def test_reset_ends_held_listens(long_raw: Any) -> None:
    raw = long_raw  # holds for 30 s: only the reset can end the listen within WAIT
    task = asyncio.create_task(raw.call("listen", {"Ver": str(raw.emu.state.companies[ADMIN].ver)}))
    await held(raw.emu)
    await raw.control("reset", {})
    assert (await asyncio.wait_for(task, WAIT))["errcode"] == "1200"


# -- SSO ------------------------------------------------------------------------------------


async def test_sso_login_one_time(raw: Any) -> None:
    key = (await raw.call("mail/authkey", {"Alias": "bob@example.com"}))["AuthKey"]
    params = {"fun": "bizopenssologin", "method": "bizauth", "agent": ADMIN,
              "user": "bob@example.com", "ticket": key}  # fmt: skip
    async with raw.session.get(raw.emu.login_url, params=params) as resp:
        assert resp.status == 200
        assert "<h1 id='account'>bob@example.com</h1>" in await resp.text()
    async with raw.session.get(raw.emu.login_url, params=params) as resp:
        assert resp.status == 403
        text = await resp.text()
        assert "already used" in text and "id='account'" not in text
    key = (await raw.call("mail/authkey", {"Alias": "bob@example.com"}))["AuthKey"]
    for wrong, why in (
        ({"agent": "other@example.com"}, "agent"),
        ({"user": "eve@example.com"}, "user"),
    ):
        async with raw.session.get(
            raw.emu.login_url, params={**params, "ticket": key, **wrong}
        ) as resp:
            assert resp.status == 403
            assert why in await resp.text()
    async with raw.session.get(raw.emu.login_url, params={**params, "ticket": "NOPE"}) as resp:
        assert resp.status == 403
    async with raw.session.get(raw.emu.login_url, params={"fun": "x"}) as resp:
        assert resp.status == 400


async def test_sso_ticket_expires(make_raw: Any) -> None:
    async with Emulator(port=0, authkey_ttl=300.0) as emu:
        raw = make_raw(emu)
        await raw.fetch_token()
        key = (await raw.call("mail/authkey", {"Alias": "bob@example.com"}))["AuthKey"]
        expired = time.time() + emu.state.authkey_ttl  # the ticket was issued before now
        emu.state.clock = lambda: expired  # the state's clock is injectable: no sleep
        params = {"fun": "bizopenssologin", "method": "bizauth", "agent": ADMIN,
                  "user": "bob@example.com", "ticket": key}  # fmt: skip
        async with raw.session.post(raw.emu.login_url, data=params) as resp:
            assert resp.status == 403
            assert "expired" in await resp.text()


# -- seeds and action codes -------------------------------------------------------------------


async def test_seed_file_and_v14_codes(tmp_path: Path, make_raw: Any) -> None:
    seed = {"companies": [{"admin": "root@corp.test", "key": "s3cret", "domains": ["corp.test"],
                           "parties": ["A/B"],
                           "users": [{"alias": "u1@corp.test", "name": "U1", "parties": ["A/B"],
                                      "slaves": ["x1@corp.test"], "unread": 7}]}]}  # fmt: skip
    path = tmp_path / "seed.json"
    path.write_text(json.dumps(seed), encoding="utf-8")
    async with Emulator(port=0, seed=path, action_codes="v1.4") as emu:
        raw = make_raw(emu)
        await raw.fetch_token("root@corp.test", "s3cret")
        assert (await raw.call("mail/newcount", {"Alias": "u1@corp.test"}))["NewCount"] == 7
        assert (await raw.call("party/list", {"PartyPath": "A"}))["List"] == [{"Value": "B"}]
        listed = await raw.call("user/list", {"Ver": "0"})
        assert listed["List"] == [{"Action": 2, "Alias": "u1@corp.test"}]
    assert load_seed(path).companies[0].users[0].slaves == ("x1@corp.test",)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"companies": {}}', "companies: expected a list"),
        ('{"companies": [{"admin": "a@b.test", "key": "k"}]}',
         "missing required key(s) ['domains']"),
        ('{"companies": [{"admin": "a@b.test", "key": "k", "domains": ["b.test"],'
         ' "users": [{"alias": "u@other.test"}]}]}', "companies[0].users[0].alias"),
        ('{"companies": [{"admin": "a@b.test", "key": "k", "domains": ["b.test"],'
         ' "users": [{"alias": "u@b.test", "parties": ["Nope"]}]}]}',
         "not in the company's parties"),
        ('{"companies": [{"admin": "a@b.test", "key": "k", "domains": ["b.test"], "colour": 1}]}',
         "unknown key(s) ['colour']"),
    ],
)  # fmt: skip
def test_bad_seed_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "seed.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(EmulatorSeedError) as err:
        load_seed(path)
    assert message in str(err.value)
    with pytest.raises(EmulatorSeedError, match="cannot read"):
        load_seed(tmp_path / "missing.json")


# -- the command ------------------------------------------------------------------------------


async def test_cli_serves_and_stops(session: aiohttp.ClientSession) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relay", "emulator", "--port", "0", "--hold", "0.2",
        "--companies", "2", "--listen-log", "10",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        match = re.search(r"token (\S+) api (\S+) login (\S+) control (\S+)", line)
        assert match, line
        token_url, api_url = match.group(1), match.group(2)
        data = {"grant_type": "client_credentials", "client_id": ADMIN,
                "client_secret": "exmail-demo-key"}  # fmt: skip
        async with session.post(token_url, data=data) as resp:
            token = (await resp.json())["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        async with session.post(api_url + "listen", data={"Ver": "0"}, headers=headers) as resp:
            assert "Ver" in await resp.json()
        data = {"grant_type": "client_credentials", "client_id": "admin@t02.test",
                "client_secret": "t02-key"}  # fmt: skip
        async with session.post(token_url, data=data) as resp:
            assert "access_token" in await resp.json()  # --companies 2: the generated tenants
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)
    assert proc.returncode == 0


def test_cli_bad_seed_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"companies": [{"admin": "nobody"}]}', encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "relay", "emulator", "--port", "0", "--data", str(path)],
        cwd=ROOT, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "companies[0]" in lines[0]
    assert "Traceback" not in result.stderr


async def test_a_lone_surrogate_is_refused_before_it_is_queued(raw: Any) -> None:
    ver = str(raw.emu.state.companies[ADMIN].ver)
    body = b'{"to": "bob@example.com", "subject": "bad \\ud800 text"}'
    async with raw.session.post(
        raw.emu.base_url + "/_emulator/mail",
        data=body,
        headers={"Content-Type": "application/json"},
    ) as resp:
        assert resp.status == 400
        assert "lone surrogate" in (await resp.json())["error"]
    assert not raw.emu.state.companies[ADMIN].pending  # nothing was queued
    _, answer = await raw.control("mail", {"to": "bob@example.com", "subject": "fine"})
    assert (await raw.call("listen", {"Ver": ver}))["MailId"] == answer["mail_id"]
