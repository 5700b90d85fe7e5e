"""The token URL and the request shapes public clients use, over real loopback HTTP."""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp

from relay.emulator import Emulator

ADMIN = "admin@example.com"
KEY = "exmail-demo-key"


async def test_token_with_form_credentials(emu: Emulator, session: aiohttp.ClientSession) -> None:
    data = {"grant_type": "client_credentials", "client_id": ADMIN, "client_secret": KEY}
    async with session.post(emu.token_url, data=data) as resp:
        body = await resp.json()
    assert resp.status == 200
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 7200
    assert body["refresh_token"] == ""
    assert len(body["access_token"]) > 20


async def test_token_with_basic_header_and_get(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    basic = base64.b64encode(f"{ADMIN}:{KEY}".encode()).decode()
    async with session.post(
        emu.token_url,
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    ) as resp:
        assert "access_token" in await resp.json()
    params = {"grant_type": "client_credentials", "client_id": ADMIN, "client_secret": KEY}
    async with session.get(emu.token_url, params=params) as resp:
        assert "access_token" in await resp.json()


async def test_bad_credentials_and_grant_type(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    data = {"grant_type": "client_credentials", "client_id": ADMIN, "client_secret": "nope"}
    async with session.post(emu.token_url, data=data) as resp:
        assert resp.status == 200
        assert await resp.json() == {"errcode": "1101", "error": "invalid_client"}
    data = {"grant_type": "password", "client_id": ADMIN, "client_secret": KEY}
    async with session.post(emu.token_url, data=data) as resp:
        assert (await resp.json())["errcode"] == "1001"
    data = {
        "grant_type": "client_credentials",
        "client_id": "who@nowhere.com",
        "client_secret": KEY,
    }
    async with session.post(emu.token_url, data=data) as resp:
        assert (await resp.json())["errcode"] == "1101"


async def test_second_token_invalidates_the_first(raw: Any) -> None:
    first = raw.token
    second = await raw.fetch_token()
    assert first != second
    assert await raw.call("mail/newcount", {"Alias": "bob@example.com"}, token=first) == {
        "errcode": "1200",
        "error": "invalid_token",
    }
    assert (await raw.call("mail/newcount", {"Alias": "bob@example.com"}))[
        "Alias"
    ] == "bob@example.com"


async def test_token_expires(make_raw: Any) -> None:
    async with Emulator(port=0, token_ttl=1) as emu:
        raw = make_raw(emu)
        await raw.fetch_token()
        assert "NewCount" in await raw.call("mail/newcount", {"Alias": "bob@example.com"})
        emu.state.clock = lambda: 10**10  # far in the future
        assert (await raw.call("mail/newcount", {"Alias": "bob@example.com"}))["errcode"] == "1200"


async def test_missing_and_garbage_tokens(raw: Any) -> None:
    url = raw.emu.api_url + "user/get"
    async with raw.session.post(url, data={"Alias": "bob@example.com"}) as resp:
        assert (await resp.json())["errcode"] == "1200"
    assert (await raw.call("user/get", {"Alias": "bob@example.com"}, token="garbage"))[
        "errcode"
    ] == "1200"


async def test_token_placements(raw: Any) -> None:
    url = raw.emu.api_url + "mail/newcount"
    alias = {"Alias": "bob@example.com"}
    shapes = [
        {"headers": {"Authorization": raw.token}, "data": alias},  # bare Authorization value
        {"headers": {"Authorization": f"bearer {raw.token}"}, "data": alias},
        {"params": {"access_token": raw.token, **alias}},  # query
        {"data": {"access_token": raw.token, **alias}},  # form
    ]
    for shape in shapes:
        async with raw.session.post(url, **shape) as resp:  # type: ignore[arg-type]
            assert (await resp.json())["Alias"] == "bob@example.com", shape
    async with raw.session.get(url, params={"access_token": raw.token, **alias}) as resp:
        assert (await resp.json())["NewCount"] == raw.emu.state.companies[ADMIN].accounts[
            "bob@example.com"
        ].unread


async def test_parameter_names_are_case_insensitive_and_get_works(raw: Any) -> None:
    for name in ("Alias", "alias", "ALIAS"):
        for method in ("GET", "POST"):
            body = await raw.call("user/get", {name: "bob@example.com"}, method=method)
            assert body["Name"] == "Bob Smith", (name, method)


async def test_repeated_parameters_are_lists(raw: Any) -> None:
    emails = [("email", "bob@example.com"), ("EMAIL", "free@example.com")]
    body = await raw.call("user/check", emails, method="GET")
    assert [e["Type"] for e in body["List"]] == [1, 0]


async def test_json_is_utf8_and_writes_are_empty(raw: Any) -> None:
    status, body = await raw.call_raw("user/get", {"Alias": "zhangwei@example.com"})
    assert json.loads(body.decode("utf-8"))["Name"] == "张伟"
    status, body = await raw.call_raw("user/openwxtoken", {"alias": "bob@example.com"})
    assert (status, body) == (200, b"")


async def test_unknown_endpoint_is_404(raw: Any) -> None:
    status, _ = await raw.call_raw("no/such")
    assert status == 404
