"""Tokens, retries, bounds and SSO against the emulator: the client's failure behaviour."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
import pytest

from relay.emulator import Emulator
from relay.exmail import (
    ExmailClient,
    ExmailTimeout,
    HTTPStatusError,
    KeepAlive,
    MalformedResponse,
    NetworkError,
    ResponseTooLarge,
    TemporarilyUnavailable,
)
from tests.exmail.conftest import ADMIN, KEY, Control
from tests.support import eventually

# -- tokens ------------------------------------------------------------------------


async def test_single_flight_on_a_fresh_client(
    make_client: Callable[..., ExmailClient], control: Control
) -> None:
    reasons: list[str] = []
    client = make_client(on_token=reasons.append)
    results = await asyncio.gather(*(client.mail_newcount("bob@example.com") for _ in range(50)))
    assert len({r.new_count for r in results}) == 1
    assert reasons == ["initial"]
    assert await control.requests("/cgi-bin/token") == 1


async def test_two_clients_knock_each_other_out_and_recover(
    make_client: Callable[..., ExmailClient], control: Control
) -> None:
    a_reasons: list[str] = []
    b_reasons: list[str] = []
    a = make_client(on_token=a_reasons.append)
    b = make_client(on_token=b_reasons.append)
    await a.user_get("bob@example.com")
    await b.user_get("bob@example.com")  # invalidates a's token
    await a.user_get("bob@example.com")  # 1200 -> one new token -> retried once
    await b.user_get("bob@example.com")
    assert a_reasons == ["initial", "invalid_token"]
    assert b_reasons == ["initial", "invalid_token"]
    assert await control.requests("/cgi-bin/token") == 4


async def test_token_expiry_renews_before_the_server_refuses() -> None:
    async with Emulator(port=0, hold=0.5, token_ttl=1) as emu:
        reasons: list[str] = []
        async with ExmailClient(
            client_id=ADMIN,
            client_secret=KEY,
            api_url=emu.api_url,
            token_url=emu.token_url,
            login_url=emu.login_url,
            on_token=reasons.append,
        ) as client:
            await client.user_get("bob@example.com")
            company = emu.state.companies[ADMIN]
            # Until the server would refuse the token: the client, which renews 10 %
            # early, must renew by itself and never meet a 1200.
            await eventually(
                lambda: emu.state.clock() >= company.token_expires,
                seconds=10,
                what="the token to expire on the server",
            )
            await client.user_get("bob@example.com")
    assert reasons == ["initial", "expired"]


async def test_invalid_token_on_a_write_refreshes_once_and_retries(
    client: ExmailClient, control: Control
) -> None:
    await client.token()
    await control.fault("invalid_token", path="/openapi/user/sync")
    await client.user_sync(2, "once@example.com", name="Once", password="Passw0rd!x")
    assert (await client.user_get("once@example.com")).name == "Once"
    assert await control.requests("/openapi/user/sync") == 2
    assert await control.requests("/cgi-bin/token") == 2


async def test_listen_made_only_of_1200_refreshes_the_token(
    client: ExmailClient, control: Control
) -> None:
    ver = (await client.user_list(0)).ver
    await control.fault("invalid_token", path="/openapi/listen")
    assert await client.listen(ver) == [KeepAlive(0)]
    assert await control.requests("/cgi-bin/token") == 2


# -- retries -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["http_500", "errcode_1002", "drop", "malformed"])
async def test_reads_retry_transient_faults(
    client: ExmailClient, control: Control, kind: str
) -> None:
    await client.token()
    await control.fault(kind, count=2, path="/openapi/user/get")
    assert (await client.user_get("bob@example.com")).alias == "bob@example.com"
    assert await control.requests("/openapi/user/get") == 3


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("http_500", HTTPStatusError),
        ("errcode_1002", TemporarilyUnavailable),
        ("drop", NetworkError),
        ("malformed", MalformedResponse),
    ],
)
async def test_read_retries_are_bounded(
    make_client: Callable[..., ExmailClient],
    control: Control,
    kind: str,
    error: type[Exception],
) -> None:
    client = make_client(read_retries=2)
    await client.token()
    await control.fault(kind, count=10, path="/openapi/party/list")
    with pytest.raises(error):
        await client.party_list()
    assert await control.requests("/openapi/party/list") == 3


@pytest.mark.parametrize("kind", ["http_500", "errcode_1002", "drop", "malformed"])
async def test_writes_are_never_retried(client: ExmailClient, control: Control, kind: str) -> None:
    await client.token()
    await control.fault(kind, count=1, path="/openapi/party/sync")
    with pytest.raises((HTTPStatusError, TemporarilyUnavailable, NetworkError, MalformedResponse)):
        await client.party_sync(2, dst_path="Once")
    assert await control.requests("/openapi/party/sync") == 1


async def test_listen_is_not_retried(client: ExmailClient, control: Control) -> None:
    await client.token()
    await control.fault("http_500", path="/openapi/listen")
    with pytest.raises(HTTPStatusError) as caught:
        await client.listen(0)
    assert caught.value.status == 500
    assert await control.requests("/openapi/listen") == 1


async def test_call_deadline(make_client: Callable[..., ExmailClient], control: Control) -> None:
    outcomes: list[tuple[str, str]] = []
    client = make_client(
        timeout=0.2, read_retries=0, on_request=lambda e, s, o: outcomes.append((e, o))
    )
    await client.token()
    await control.fault("delay", seconds=1.0, path="/openapi/user/get")
    with pytest.raises(ExmailTimeout):
        await client.user_get("bob@example.com")
    assert outcomes[-1] == ("user/get", "timeout")
    assert outcomes[0] == ("token", "ok")


async def test_response_size_cap(make_client: Callable[..., ExmailClient]) -> None:
    client = make_client(max_response_bytes=500)
    assert (await client.user_get("bob@example.com")).alias == "bob@example.com"
    with pytest.raises(ResponseTooLarge):
        await client.user_list(0)  # twenty accounts: well over 500 bytes


# -- SSO ---------------------------------------------------------------------------


async def test_sso_login_end_to_end(client: ExmailClient, emulator: Emulator) -> None:
    url = await client.sso_login_url("bob@example.com")
    assert url.startswith(emulator.login_url + "?fun=bizopenssologin&method=bizauth")
    assert f"agent={ADMIN}" in url
    assert "user=bob@example.com" in url
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as resp:
            assert resp.status == 200
            assert "bob@example.com" in await resp.text()
        async with session.get(url) as resp:  # the ticket is single use
            assert resp.status == 403
