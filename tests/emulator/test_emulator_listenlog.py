"""The listen log over loopback: raw aiohttp clients listen as "replicas" of one company,
and the log (Python and ``/_emulator/listens...``) says who held what, when, and how it
ended; overlaps, gaps and token fetches come out with bounds the test measured itself.

Times are ``time.monotonic()``, the emulator's clock (one clock per machine on Linux)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from relay.emulator import Emulator, tenant_key
from relay.exmail import ExmailClient
from tests.emulator.conftest import WAIT, Raw, eventually, held

ADMIN = "admin@example.com"
KEY = "exmail-demo-key"


@pytest.fixture
async def long_emu() -> AsyncIterator[Emulator]:
    """Holds a listen 30 s: within a test's wait, only a push, a token change or the
    client can end it."""
    async with Emulator(port=0, hold=30.0) as emu:
        yield emu


def ver(emu: Emulator) -> str:
    return str(emu.state.companies[ADMIN].ver)


async def listen(raw: Raw, replica: str | None = None, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token or raw.token}"}
    if replica is not None:
        headers["X-Relay-Replica"] = replica
    data = {"Ver": ver(raw.emu)}
    async with raw.session.post(raw.emu.api_url + "listen", data=data, headers=headers) as resp:
        return await resp.json()


async def test_two_replicas_holding_one_company_overlap(long_emu: Emulator, make_raw: Any) -> None:
    raw = make_raw(long_emu)
    await raw.fetch_token()
    first = asyncio.create_task(listen(raw, "replica-a"))
    await held(long_emu, 1)
    before_second = time.monotonic()
    second = asyncio.create_task(listen(raw, "replica-b"))
    await held(long_emu, 2)
    both_held = time.monotonic()
    await raw.control("mail", {"to": "bob@example.com"})  # wakes one of them: the first
    assert "MailId" in json.dumps(await asyncio.wait_for(first, WAIT))
    first_answered = time.monotonic()

    [overlap] = long_emu.overlaps(ADMIN)
    assert overlap.first.replica == "replica-a"
    assert overlap.second.replica == "replica-b"
    assert (overlap.first.token, overlap.second.token) == (1, 1)
    assert before_second <= overlap.start <= both_held
    assert both_held <= overlap.end <= first_answered
    assert not overlap.open
    done = long_emu.listens(ADMIN)[0]
    assert (done.replica, done.outcome, done.end) == ("replica-a", "data", overlap.end)
    assert long_emu.listens(ADMIN)[1].open

    _, body = await raw.control(
        f"listens/overlaps?company=example.com&since={both_held}", method="GET"
    )
    assert [o["replicas"] for o in body["overlaps"]] == [["replica-a", "replica-b"]]
    assert body["overlaps"][0]["seconds"] == pytest.approx(overlap.seconds)
    assert body["now"] >= first_answered
    _, body = await raw.control(f"listens/overlaps?since={first_answered + 1}", method="GET")
    assert body["overlaps"] == []
    second.cancel()
    await asyncio.gather(second, return_exceptions=True)
    await eventually(lambda: long_emu.listen_log.open_count() == 0, what="the hold to end")
    assert long_emu.listens(ADMIN)[1].outcome == "client_gone"


async def test_a_new_token_ends_the_listen_held_under_the_old_one(
    long_emu: Emulator, make_raw: Any, session: aiohttp.ClientSession
) -> None:
    old, new = make_raw(long_emu), make_raw(long_emu)
    await old.fetch_token()
    stale = asyncio.create_task(listen(old, "replica-a"))
    await held(long_emu, 1)
    before_fetch = time.monotonic()
    await new.fetch_token()  # replica-b takes over: the token is the fence
    answer = await asyncio.wait_for(stale, WAIT)  # the hold is 30 s: only the fetch ends it
    assert answer["errcode"] == "1200"
    fresh = asyncio.create_task(listen(new, "replica-b"))
    await held(long_emu, 1)
    [a, b] = long_emu.listens(ADMIN)
    assert (a.replica, a.token, a.outcome) == ("replica-a", 1, "token_rejected")
    assert (b.replica, b.token, b.outcome) == ("replica-b", 2, None)
    assert a.end is not None and before_fetch <= a.end <= b.start
    assert long_emu.overlaps(ADMIN) == []
    [gap] = long_emu.gaps(ADMIN, since=before_fetch)
    assert (gap.start, gap.end) == (a.end, b.start)
    await long_emu.stop()  # shutdown answers the held listen
    assert (await asyncio.wait_for(fresh, WAIT)) == {"Ret": 0}
    assert long_emu.listens(ADMIN)[1].outcome == "keepalive"


async def test_gap_between_two_listens_and_the_peer_as_replica(raw: Raw) -> None:
    started = time.monotonic()
    assert await asyncio.wait_for(listen(raw), WAIT) == {"Ret": 0}  # hold 0.3 s, no header
    between = time.monotonic()
    await eventually(lambda: time.monotonic() > between + 0.05, what="a measurable pause")
    assert await asyncio.wait_for(listen(raw), WAIT) == {"Ret": 0}
    finished = time.monotonic()
    first, second = raw.emu.listens(ADMIN)
    assert first.outcome == second.outcome == "keepalive"
    assert first.replica.startswith("127.0.0.1:")  # no X-Relay-Replica: the peer address
    assert first.replica == first.peer
    gaps = raw.emu.gaps(ADMIN, since=started)
    takeover = [g for g in gaps if g.start == first.end]
    assert len(takeover) == 1
    assert takeover[0].end == second.start
    assert started <= takeover[0].start <= between  # the first answer, then the pause
    assert between + 0.05 <= takeover[0].end <= finished
    assert gaps[-1].open and gaps[-1].start == second.end  # nobody listens now
    _, body = await raw.control(
        f"listens/gaps?company={ADMIN}&since={started}&min=0.05", method="GET"
    )
    assert [(g["start"], g["end"]) for g in body["gaps"]][:1] == [(first.end, second.start)]
    _, body = await raw.control(f"listens?company={ADMIN}&since={between}", method="GET")
    assert [x["id"] for x in body["listens"]] == [second.id]
    assert body["listens"][0]["seconds"] == pytest.approx(second.end - second.start)


async def test_token_fetches_are_counted_per_company(raw: Raw, make_raw: Any) -> None:
    _, body = await raw.control("companies", {"count": 12, "users": 2})
    assert body["added"] == 12
    assert body["companies"][0] == {"admin": "admin@t01.test", "domain": "t01.test"}
    tenant = make_raw(raw.emu)
    since = time.monotonic()
    for _ in range(3):
        await tenant.fetch_token("admin@t05.test", tenant_key("t", 5))
    await raw.fetch_token()
    assert len(raw.emu.state.companies) == 13
    _, state = await raw.control("state", method="GET")
    fetches = {c["admin"]: c["token_fetches"] for c in state["companies"]}
    assert fetches["admin@t05.test"] == 3
    assert fetches[ADMIN] == 2  # the fixture's and this one
    assert fetches["admin@t06.test"] == 0
    _, body = await raw.control(f"tokens?since={since}", method="GET")
    assert body["counts"]["admin@t05.test"] == 3
    assert body["counts"][ADMIN] == 1
    assert [f["generation"] for f in body["fetches"] if f["company"] == "admin@t05.test"] == [
        1,
        2,
        3,
    ]
    assert [f.generation for f in raw.emu.token_fetches("t05.test")] == [1, 2, 3]
    assert all(since <= f["at"] <= body["now"] for f in body["fetches"])
    status, body = await raw.control("companies", {"count": 1})  # t01 exists
    assert status == 400
    assert "admin@t01.test" in body["error"]
    status, _ = await raw.control("companies", {"count": 2, "prefix": "ha", "first": 20})
    assert status == 200
    assert "admin@ha21.test" in raw.emu.state.companies
    for bad in ({"count": 0}, {"count": "3"}, {"prefix": "No Domain"}, {"users": -1}):
        status, body = await raw.control("companies", bad)
        assert status == 400, bad


async def test_the_log_shows_no_secret_and_refuses_bad_queries(
    long_emu: Emulator, make_raw: Any
) -> None:
    raw = make_raw(long_emu)
    await raw.fetch_token()
    task = asyncio.create_task(listen(raw, "replica-a"))
    await held(long_emu, 1)
    second = make_raw(long_emu)
    await second.fetch_token()
    await asyncio.wait_for(task, WAIT)
    texts = []
    for path in ("listens", "listens/overlaps", "listens/gaps", "tokens", "state"):
        status, body = await raw.control(path, method="GET")
        assert status == 200, path
        texts.append(json.dumps(body))
    text = "\n".join(texts)
    assert '"token_rejected"' in text
    for secret in (raw.token, second.token, KEY):
        assert secret not in text
    for bad in ("since=yesterday", "since=nan", "min=-inf&since=1"):
        path = "listens/gaps?" + bad
        status, body = await raw.control(path, method="GET")
        assert status == 400, path
        assert bad.split("=")[0] in body["error"]
    status, _ = await raw.control("listens/gaps?company=nobody.test", method="GET")
    assert status == 404
    with pytest.raises(KeyError):
        long_emu.listens("nobody.test")


async def test_the_client_names_its_replica_on_listen(raw: Raw) -> None:
    async with ExmailClient(
        client_id=ADMIN,
        client_secret=KEY,
        api_url=raw.emu.api_url,
        token_url=raw.emu.token_url,
        replica="relay-0",
    ) as client:
        await client.listen(0)
        await client.user_get("bob@example.com")
    [logged] = raw.emu.listens(ADMIN)
    assert logged.replica == "relay-0"
    assert logged.replica != logged.peer
    assert logged.outcome == "data"  # Ver 0 is behind: a version update


async def test_calls_and_token_fetches_name_their_replica_refused_calls_included(
    long_emu: Emulator,
) -> None:
    """The request log: every OpenApi call made with one of the company's tokens, by
    replica (``X-Relay-Replica``), a call under a superseded token or one answered by a
    fault included; token fetches carry the replica too."""
    async with aiohttp.ClientSession() as session:
        common = {
            "client_id": ADMIN,
            "client_secret": KEY,
            "api_url": long_emu.api_url,
            "token_url": long_emu.token_url,
            "session": session,
        }
        async with (
            ExmailClient(**common, replica="r1") as r1,
            ExmailClient(**common, replica="r2", read_retries=0) as r2,
        ):
            since = time.monotonic()
            await r1.user_get("alice@example.com")
            old = await r1.token()
            await r2.user_get("bob@example.com")  # fetches: r1's token is void now
            async with session.post(
                long_emu.api_url + "user/get",
                data={"Alias": "alice@example.com"},
                headers={"Authorization": f"Bearer {old}", "X-Relay-Replica": "r1"},
            ) as resp:
                assert (await resp.json())["errcode"] == "1200"
            async with session.post(
                long_emu.api_url + "user/get",
                data={"Alias": "alice@example.com"},
                headers={"Authorization": "Bearer never-issued", "X-Relay-Replica": "r3"},
            ) as resp:
                assert (await resp.json())["errcode"] == "1200"
    calls = [(c.operation, c.replica) for c in long_emu.calls(ADMIN, since=since)]
    assert calls == [("user/get", "r1"), ("user/get", "r2"), ("user/get", "r1")]
    fetches = [f.replica for f in long_emu.token_fetches(ADMIN, since=since)]
    assert fetches == ["r1", "r2"]
