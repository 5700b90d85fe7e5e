"""The token cache under pacing: a fetch waits for its turn, a fresh token never does,
and the fence is asked after the wait (no I/O: the fetch and the pacer are injected)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from pydantic import SecretStr

from relay.exmail import TokenFenced
from relay.exmail._token import TokenCache


class Gate:
    """A pacer that lets a turn through only when the test says so."""

    def __init__(self) -> None:
        self.asked = 0
        self.opened = asyncio.Event()

    async def turn(self) -> None:
        self.asked += 1
        await self.opened.wait()


def fetcher(log: list[str]) -> Callable[[], Awaitable[tuple[SecretStr, float]]]:
    async def fetch() -> tuple[SecretStr, float]:
        log.append(f"t{len(log)}")
        return SecretStr(log[-1]), 7200.0

    return fetch


async def test_a_fetch_waits_for_its_turn_a_fresh_token_does_not() -> None:
    fetched: list[str] = []
    gate = Gate()
    cache = TokenCache(fetcher(fetched), pace=gate.turn)
    assert cache.paced
    waiting = asyncio.ensure_future(cache.get())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert gate.asked == 1 and fetched == [], "no fetch before the turn"
    gate.opened.set()
    assert (await waiting).get_secret_value() == "t0"
    assert (await cache.get()).get_secret_value() == "t0"
    assert gate.asked == 1, "a cached, fresh token takes no turn"
    await cache.refresh(SecretStr("t0"))
    assert gate.asked == 2 and fetched == ["t0", "t1"], "the fetch after a 1200 is paced too"


async def test_a_caller_that_took_its_turn_fetches_without_another() -> None:
    fetched: list[str] = []
    gate = Gate()
    cache = TokenCache(fetcher(fetched), pace=gate.turn)
    gate.opened.set()
    assert (await cache.turn()).get_secret_value() == "t0", "the token, fetched in the turn"
    assert (await cache.get(paced=False)).get_secret_value() == "t0"
    assert gate.asked == 1 and fetched == ["t0"]


async def test_the_fence_is_asked_after_the_wait() -> None:
    fetched: list[str] = []
    gate = Gate()
    holds = [True]
    cache = TokenCache(fetcher(fetched), pace=gate.turn, fence=lambda: holds[0])
    waiting = asyncio.ensure_future(cache.get())
    await asyncio.sleep(0)
    holds[0] = False  # the lease goes while the tenant waits for its turn
    gate.opened.set()
    with pytest.raises(TokenFenced):
        await waiting
    assert fetched == [], "no fetch for a tenant this replica no longer holds"


async def test_without_a_pacer_nothing_waits() -> None:
    fetched: list[str] = []
    cache = TokenCache(fetcher(fetched))
    assert not cache.paced
    assert (await cache.turn()).get_secret_value() == "t0"
    assert (await cache.get()).get_secret_value() == "t0"
    assert fetched == ["t0"]
