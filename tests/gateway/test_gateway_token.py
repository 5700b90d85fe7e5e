"""The gateway uses the listener's token: gateway traffic never fetches one of its own,
and a herd that meets ``invalid_token`` together causes one fetch, not N."""

from __future__ import annotations

import asyncio

import aiohttp

from relay.app.wiring import Running
from relay.emulator import Emulator
from tests.gateway.conftest import PORTAL_KEY, aliases, base, bearer, control, requests_to
from tests.gateway.test_gateway_auth import call
from tests.support import eventually

TOKEN = "/cgi-bin/token"


async def _herd(relay: Running, http: aiohttp.ClientSession, users: list[str]) -> list[int]:
    root = f"{base(relay)}/v1/tenants/acme"

    async def one(i: int) -> int:
        user = users[i % len(users)]
        if i % 2:
            status, _, _ = await call(
                http, "GET", f"{root}/users/{user}", headers=bearer(PORTAL_KEY)
            )
        else:
            status, _, _ = await call(
                http, "GET", f"{root}/users/{user}/unread?max_age=0", headers=bearer(PORTAL_KEY)
            )
        return status

    return list(await asyncio.gather(*(one(i) for i in range(50))))


async def test_fifty_concurrent_calls_beside_the_listener_fetch_no_token(
    relay: Running, http: aiohttp.ClientSession, emulator: Emulator
) -> None:
    listener = relay.service.listeners[0]
    await eventually(lambda: listener.status.state == "connected", what="the listener")
    users = await aliases(http, emulator)
    assert await requests_to(http, emulator, TOKEN) == 1
    statuses = await _herd(relay, http, users)
    assert statuses == [200] * 50
    assert await requests_to(http, emulator, TOKEN) == 1
    # the listener still holds a valid token: a mail still arrives
    events = listener.status.events_by_type.get("exmail.mail.new", 0)
    await control(http, emulator, "mail", {"to": users[0]})
    await eventually(
        lambda: listener.status.events_by_type.get("exmail.mail.new", 0) > events,
        what="the mail through the listener",
    )
    assert await requests_to(http, emulator, TOKEN) == 1
    assert listener.status.state == "connected"


async def test_a_herd_meeting_invalid_token_causes_one_fetch(
    relay: Running, http: aiohttp.ClientSession, emulator: Emulator
) -> None:
    listener = relay.service.listeners[0]
    await eventually(lambda: listener.status.state == "connected", what="the listener")
    users = await aliases(http, emulator)
    # The fault answers 1200 once and invalidates the token: every call that holds it
    # (the held listen included) is refused and asks the cache to refresh that token.
    await control(http, emulator, "faults", {"kind": "invalid_token", "path": "/openapi/user/get"})
    statuses = await _herd(relay, http, users)
    assert statuses == [200] * 50
    assert await requests_to(http, emulator, TOKEN) == 2
