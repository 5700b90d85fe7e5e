"""The token fence at every door (issue 18, item 7), against the real emulator.

- a request that waited for a pooled connection while the lease went never leaves
  (the session's ``fence_trace`` hook asks the fence with the connection in hand);
- a caller that waited on the token lock while the lease went gets no token, and a
  fetch that comes back after the lease went hands out nothing;
- a fenced client refuses a session without the hook.

The emulator's request log (``Emulator.calls``) shows what left the client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
import pytest
from pydantic import SecretStr

from relay.emulator import Emulator
from relay.exmail import ExmailClient, TokenCache, TokenFenced, fence_trace
from tests.exmail.conftest import ADMIN, Control
from tests.support import eventually


class Lease:
    """The fence's answer, flipped by the test."""

    def __init__(self) -> None:
        self.held = True

    def __call__(self) -> bool:
        return self.held


async def test_a_request_waiting_for_a_pooled_connection_never_leaves_after_the_lease(
    make_client: Callable[..., ExmailClient], emulator: Emulator, control: Control
) -> None:
    lease = Lease()
    connector = aiohttp.TCPConnector(limit=1)  # one connection: the second call waits
    async with aiohttp.ClientSession(connector=connector, trace_configs=[fence_trace()]) as s:
        client = make_client(session=s, token_fence=lease, replica="r1")
        await client.token()  # fetched while the lease is held
        await control.fault("delay", path="/openapi/user/get", seconds=1.0)
        first = asyncio.create_task(client.user_get("alice@example.com"))
        await eventually(lambda: len(emulator.calls(ADMIN)) == 1, what="the first call")
        second = asyncio.create_task(client.user_get("bob@example.com"))
        await asyncio.sleep(0.2)  # asked the fence, got the token, waits for the connection
        assert not second.done()
        lease.held = False  # the lease goes while it waits
        assert (await first).alias == "alice@example.com"  # it had left before
        with pytest.raises(TokenFenced):
            await second
    calls = [(c.operation, c.replica) for c in emulator.calls(ADMIN)]
    assert calls == [("user/get", "r1")], calls


async def test_a_lock_waiter_gets_no_token_once_the_lease_went() -> None:
    lease = Lease()
    release = asyncio.Event()
    fetched = 0

    async def fetch() -> tuple[SecretStr, float]:
        nonlocal fetched
        fetched += 1
        await release.wait()
        return SecretStr(f"t{fetched}"), 7200.0

    cache = TokenCache(fetch, fence=lease)
    first = asyncio.create_task(cache.get())  # holds the lock while it fetches
    await eventually(lambda: fetched == 1, what="the fetch under way")
    waiter = asyncio.create_task(cache.get())  # asked the fence on entry: yes; then waits
    stale = asyncio.create_task(cache.refresh(SecretStr("t0")))
    await asyncio.sleep(0.05)
    lease.held = False
    release.set()
    for task in (first, waiter, stale):
        with pytest.raises(TokenFenced):
            await task
    assert fetched == 1
    lease.held = True  # the lease again: the token fetched meanwhile is the current one
    assert (await cache.get()).get_secret_value() == "t1"


async def test_a_fenced_client_needs_the_fence_hook_on_its_session(
    make_client: Callable[..., ExmailClient],
) -> None:
    async with aiohttp.ClientSession() as plain:
        with pytest.raises(ValueError, match="fence_trace"):
            make_client(session=plain, token_fence=Lease())
        make_client(session=plain)  # unfenced (static mode): any session
