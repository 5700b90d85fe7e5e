"""The second API's tokens against the real emulator: one cache per app, one fetch under
concurrency after 40001/42001, both readings of token rotation, the fence, and secrets
kept out of reprs and errors."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
import pytest

from relay.emulator import Emulator
from relay.exmail import InvalidCredentials, InvalidToken, NetworkError, TokenFenced, fence_trace
from relay.exmail2 import App, Exmail2Client
from tests.exmail2.conftest import CORPID, SECRETS, Control
from tests.support import eventually

Make = Callable[..., Exmail2Client]
CALLERS = 20


async def test_one_token_per_app_fetched_once_under_concurrency(
    client: Exmail2Client, control: Control
) -> None:
    seen: list[tuple[App, str]] = []
    client = Exmail2Client(
        corpid=CORPID,
        secrets=SECRETS,
        base_url=client.base_url,
        on_token=lambda app, reason: seen.append((app, reason)),
    )
    async with client:
        counts = await asyncio.gather(
            *(client.mail_newcount("lisi@example.org") for _ in range(CALLERS)),
            *(client.user_get("lisi@example.org") for _ in range(CALLERS)),
        )
        assert len(counts) == 2 * CALLERS
        assert sorted(seen) == [(App.DIRECTORY, "initial"), (App.NEWMAIL, "initial")]
        assert await client.token(App.DIRECTORY) != await client.token(App.NEWMAIL)
    assert await control.token_fetches("directory") == 1
    assert await control.token_fetches("newmail") == 1


@pytest.mark.parametrize("code", [40001, 40014, 42001])
async def test_a_refused_token_is_fetched_once_and_every_call_retried(
    code: int, client: Exmail2Client, control: Control, emulator: Emulator
) -> None:
    await control.post(
        "api2/settings", {"invalid_token_errcode": 40001 if code == 40001 else 40014}
    )
    await client.user_get("lisi@example.org")
    first = await client.token(App.DIRECTORY)
    if code == 42001:
        emulator.api2.expire_tokens(CORPID, "directory")
    else:
        emulator.api2.revoke(first)  # the server no longer knows it
    refused = await _status(client, first)
    assert refused == code
    members = await asyncio.gather(*(client.user_get("lisi@example.org") for _ in range(CALLERS)))
    assert {m.userid for m in members} == {"lisi@example.org"}
    assert await control.token_fetches("directory") == 2
    assert await client.token(App.DIRECTORY) != first
    assert await control.requests("/cgi-bin/user/get") == 2 + 2 * CALLERS


async def _status(client: Exmail2Client, token: str) -> int:
    """The errcode a ``user/get`` with ``token`` gets, bypassing the client's cache."""
    url = client.base_url + "user/get"
    async with aiohttp.ClientSession() as session:
        params = {"access_token": token, "userid": "lisi@example.org"}
        async with session.get(url, params=params) as resp:
            return int((await resp.json())["errcode"])


async def test_an_expired_token_gets_42001_and_a_new_one(
    client: Exmail2Client, control: Control
) -> None:
    await client.user_get("lisi@example.org")
    assert (await control.post("api2/tokens/expire", {"app": "directory"}))["expired"] == 1
    await asyncio.gather(*(client.user_get("lisi@example.org") for _ in range(CALLERS)))
    assert await control.token_fetches("directory") == 2
    assert await control.requests("/cgi-bin/user/get") == 1 + 2 * CALLERS


async def test_a_write_refused_for_its_token_is_made_once_more(
    client: Exmail2Client, control: Control
) -> None:
    await client.user_get("lisi@example.org")
    await control.fault("invalid_token", "/cgi-bin/department/create")  # revokes the token
    ident = await client.department_create("After refusal", 1)
    assert ident > 2**53
    assert await control.requests("/cgi-bin/department/create") == 2


async def test_a_token_refused_twice_is_an_error(client: Exmail2Client, control: Control) -> None:
    await control.fault("api_error", "/cgi-bin/user/get", count=2, errcode="42001", error="x")
    with pytest.raises(InvalidToken) as caught:
        await client.user_get("lisi@example.org")
    assert caught.value.errcode == "42001"  # armed as a JSON string: read all the same


async def test_reuse_until_expiry_answers_the_same_token(
    make_client: Make, control: Control
) -> None:
    one, two = make_client(), make_client()
    first = await one.token(App.SSO)
    assert await two.token(App.SSO) == first
    await one.get_login_url("lisi@example.org")
    await two.get_login_url("lisi@example.org")
    assert await control.token_fetches("sso") == 2
    assert await _status(one, await one.token(App.DIRECTORY)) == 0


async def test_invalidate_previous_knocks_out_the_other_clients_token(
    make_client: Make, control: Control
) -> None:
    await control.post("api2/settings", {"token_rotation": "invalidate_previous"})
    one, two = make_client(), make_client()
    first = await one.token(App.DIRECTORY)
    second = await two.token(App.DIRECTORY)
    assert first != second
    assert await _status(one, first) == 40014
    await one.user_get("lisi@example.org")  # 40014, one fetch, retried
    assert await control.token_fetches("directory") == 3
    third = await one.token(App.DIRECTORY)
    assert third not in (first, second)
    assert await _status(two, second) == 40014  # one's refetch replaced two's token
    assert await _status(one, third) == 0


async def test_bad_secret_is_invalid_credentials_and_never_shown(make_client: Make) -> None:
    client = make_client(secrets={"directory": "wrong-directory-secret"})
    assert "wrong-directory-secret" not in repr(client)
    with pytest.raises(InvalidCredentials) as caught:
        await client.user_get("lisi@example.org")
    assert caught.value.errcode == "40001"
    assert "wrong-directory-secret" not in str(caught.value)
    assert "secret" not in repr(client.tokens[App.DIRECTORY])


async def test_the_fence_stops_every_app(make_client: Make, control: Control) -> None:
    held = True
    async with aiohttp.ClientSession(trace_configs=[fence_trace()]) as session:
        client = make_client(token_fence=lambda: held, session=session)
        await client.user_get("lisi@example.org")
        await client.mail_newcount("lisi@example.org")
        held = False
        with pytest.raises(TokenFenced):
            await client.user_get("lisi@example.org")
        with pytest.raises(TokenFenced):
            await client.mail_newcount("lisi@example.org")
    assert await control.requests("/cgi-bin/user/get") == 1
    assert await control.requests("/cgi-bin/mail/newcount") == 1


async def test_a_fenced_client_refuses_a_session_without_the_hook(make_client: Make) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ValueError, match="fence_trace"):
            make_client(token_fence=lambda: True, session=session)


async def test_tokens_are_shared_between_clients(make_client: Make, control: Control) -> None:
    one = make_client()
    two = make_client(tokens=one.tokens)
    await one.user_get("lisi@example.org")
    await two.user_get("lisi@example.org")
    assert await control.token_fetches("directory") == 1


async def test_transport_errors_name_no_secret_nor_token(emulator: Emulator) -> None:
    reported: list[tuple[str, str]] = []
    client = Exmail2Client(
        corpid=CORPID,
        secrets=SECRETS,
        base_url="http://127.0.0.1:9/cgi-bin/",  # the discard port: nothing listens
        read_retries=0,
        on_request=lambda op, seconds, outcome: reported.append((op, outcome)),
    )
    async with client:
        with pytest.raises(NetworkError) as caught:
            await client.user_get("lisi@example.org")
    text = f"{caught.value} {caught.value.__cause__!s} {reported}"
    assert "demo-directory-secret" not in str(caught.value)
    assert "corpsecret" not in str(caught.value)
    assert reported == [("gettoken", "network")]
    assert "127.0.0.1:9" in text


async def test_paced_fetches_wait_their_turn_and_a_fresh_token_never_does(
    client: Exmail2Client, emulator: Emulator
) -> None:
    """``token_pace`` (the pacer's turn, here a gate the test opens): every fetch awaits
    it, the fence is asked after the wait, and a call with a fresh token never waits;
    a client sharing the caches (the gateway's) neither. The request log shows it."""
    turns: list[asyncio.Event] = []

    async def pace() -> None:
        gate = asyncio.Event()
        turns.append(gate)
        await gate.wait()

    holds = [True]
    paced = Exmail2Client(
        corpid=CORPID,
        secrets=SECRETS,
        base_url=client.base_url,
        token_pace=pace,
        token_fence=lambda: holds[0],
    )
    async with paced:
        first = asyncio.ensure_future(paced.user_get("lisi@example.org"))
        await eventually(lambda: len(turns) == 1, what="the fetch waits its turn")
        assert not first.done() and emulator.token_fetches(CORPID) == []
        turns[0].set()
        assert (await first).userid == "lisi@example.org"
        assert len(emulator.token_fetches(CORPID)) == 1
        # Fresh: no turn asked, also through a client sharing the caches.
        gateway = Exmail2Client(
            corpid=CORPID, secrets=SECRETS, base_url=client.base_url, tokens=paced.tokens
        )
        async with gateway:
            await paced.user_get("lisi@example.org")
            await gateway.user_get("lisi@example.org")
        assert len(turns) == 1 and len(emulator.token_fetches(CORPID)) == 1
        calls = [c.operation for c in emulator.calls(CORPID)]
        assert calls == ["user/get"] * 3
        # Another app's fetch waits; the lease goes meanwhile: fenced after the wait.
        other = asyncio.ensure_future(paced.mail_newcount("lisi@example.org"))
        await eventually(lambda: len(turns) == 2, what="the newmail fetch waits its turn")
        holds[0] = False
        turns[1].set()
        with pytest.raises(TokenFenced):
            await other
    assert len(emulator.token_fetches(CORPID)) == 1, "nothing fetched once fenced"
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{emulator.base_url}/_emulator/tokens", params={"company": CORPID}) as resp,
    ):
        assert resp.status == 200 and (await resp.json())["counts"] == {CORPID: 1}
