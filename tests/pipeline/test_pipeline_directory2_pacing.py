"""Pacing of the second API's tenants, in-process on real parts (the emulator over
loopback, the relay's HTTP gateway): ``TENANTS`` api2 tenants start together with
``[sharding] takeover_rate = RATE``. Their directory pollers' first listings (each a full
listing, with its ``directory`` token fetched in the same turn) go one turn at a time:
the emulator's request log (``token_fetches``, keyed by corpid) never holds more than
``rate + burst`` fetches in a second (plus 2 for requests that reached the log up to
0.5 s late on a busy machine), every tenant's first ``user/list`` happens, the status
shows the wait (``tenants[].directory.waiting``) and the metrics count the turns.

Meanwhile the gateway's call for a tenant whose token is fresh does not queue: it is
answered while later tenants still wait for their turn (turns are first come, first
served, so a call that needed one would come after all of them), and fetches nothing.

Unpaced (``takeover_rate = 100000``) both parts fail: all 12 tenants are listed before
the gateway's call, and their 12 fetches land within 0.01 s (the bound is 5).

One poller on its own (its turn a gate the test opens, so nothing is timed): a turn
before the first listing, again for its retry after a failure, none once a listing was
read, and again for a new poller of the tenant (a takeover).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry

from relay.app.settings import Settings
from relay.core.pacing import default_burst
from relay.emulator import Emulator
from relay.exmail2 import App, Exmail2Client
from relay.journal import Journal
from relay.ops.metrics import Metrics, PrometheusObserver
from relay.runtime.directory2 import DirectoryPoller, PollState
from tests.pipeline.support import control
from tests.support import eventually, running_relay

TENANTS = 12
RATE = 3.0
BOUND = int(RATE) + default_burst(RATE) + 2  # fetches in any one second
KEY = "pacing-reader-key-000000001"


def corpid(i: int) -> str:
    return f"wwpacing{i:09d}"


def busiest(moments: Iterable[float], seconds: float = 1.0) -> int:
    """The most moments in any window of ``seconds``."""
    times = sorted(moments)
    most = j = 0
    for i, start in enumerate(times):
        j = max(j, i)
        while j < len(times) and times[j] < start + seconds:
            j += 1
        most = max(most, j - i)
    return most


def settings(emu: Emulator, path: Path) -> Settings:
    tenants = [
        {"name": f"p{i:02d}", "api": "api2", "corpid": corpid(i),
         "contact_secret": f"pacing-directory-{i}", "callback_token": "tok12345",
         "encoding_aes_key": "k" * 43, "api_url": emu.api2_url,
         "directory_interval": 3600, "request_timeout": 5}
        for i in range(TENANTS)
    ]  # fmt: skip
    return Settings(
        journal={"path": path},
        tenants=tenants,
        console={"enabled": True},
        sharding={"mode": "static", "takeover_rate": RATE},
        http={"host": "127.0.0.1", "port": 0, "auth_token": "ops-token-0123456789"},
        clients=[{"name": "reader", "key": KEY, "scopes": ["read"], "rate": 1000, "burst": 1000}],
    )


async def seed(emu: Emulator) -> None:
    for i in range(TENANTS):
        await control(
            emu,
            "api2/tenant",
            {"corpid": corpid(i), "secrets": {"directory": f"pacing-directory-{i}"},
             "domains": [f"p{i}.test"], "departments": ["Staff"],
             "users": [{"userid": f"ann@p{i}.test", "name": "Ann", "departments": ["Staff"]}]},
        )  # fmt: skip


def listed(emu: Emulator) -> set[str]:
    """The tenants whose directory was listed (``user/list``) at least once."""
    return {c.company for c in emu.calls() if c.operation == "user/list"}


async def test_api2_first_listings_take_turns_and_a_fresh_token_never_waits(
    emulator: Emulator, tmp_path: Path
) -> None:
    await seed(emulator)
    registry = CollectorRegistry()
    observer = PrometheusObserver(Metrics(registry))
    waiting_seen: set[str] = set()
    async with running_relay(settings(emulator, tmp_path / "j.db"), observer=observer) as run:
        pollers = run.service.pollers
        assert pollers is not None and run.server is not None
        first = corpid(0)
        await eventually(lambda: first in listed(emulator), what="the first tenant's listing")
        # The first tenant's directory token is fresh; most tenants still wait their turn.
        assert len(listed(emulator)) < TENANTS // 2
        url = f"{run.server.url.rstrip('/')}/v1/tenants/p00/users/ann@p0.test"
        async with (
            aiohttp.ClientSession() as http,
            http.get(url, headers={"Authorization": f"Bearer {KEY}"}) as resp,
        ):
            answer: Any = await resp.json(content_type=None)
        assert resp.status == 200, answer
        assert answer["alias"] == "ann@p0.test"
        assert len(listed(emulator)) < TENANTS, "the fresh token's call queued behind nobody"
        assert len(emulator.token_fetches(first)) == 1, "a fresh token is not fetched again"

        def all_listed() -> bool:
            waiting_seen.update(n for n, s in pollers.states.items() if s.waiting)
            return all(s.last_outcome == "baseline" for s in pollers.states.values())

        await eventually(all_listed, what="every tenant's first listing", seconds=60)
        status = await run.service.status()
        rows = {t.name: t for t in status.tenants}
        directories = [rows[f"p{i:02d}"].directory for i in range(TENANTS)]
        assert all(d is not None and d.waiting is False for d in directories)
    assert listed(emulator) == {corpid(i) for i in range(TENANTS)}
    fetches = emulator.token_fetches()
    assert len(fetches) == TENANTS, "one directory token per tenant, fetched in its turn"
    assert busiest(f.at for f in fetches) <= BOUND, [round(f.at, 2) for f in fetches]
    assert waiting_seen, "the status showed tenants waiting for their turn"
    turns = registry.get_sample_value("exmail_relay_takeover_wait_seconds_count")
    assert turns is not None and turns >= TENANTS
    assert registry.get_sample_value("exmail_relay_takeover_queue") == 0


async def test_a_poller_takes_a_turn_until_its_first_listing_is_read(
    emulator: Emulator, tmp_path: Path
) -> None:
    """The poller's turn, given by the test: awaited before the first listing (status
    ``waiting``), again for each retry of a listing that failed, never once one was
    read; a new poller of the tenant (a takeover) takes one again."""
    await seed(emulator)
    turns: list[asyncio.Event] = []

    async def turn() -> None:
        gate = asyncio.Event()
        turns.append(gate)
        await gate.wait()

    async with (
        Journal(tmp_path / "journal.sqlite3") as journal,
        Exmail2Client(
            corpid=corpid(0), secrets={App.DIRECTORY: "pacing-directory-0"},
            base_url=emulator.api2_url, read_retries=0,
        ) as client,
    ):  # fmt: skip
        state = PollState("p00", 3600.0)

        def poller() -> DirectoryPoller:
            return DirectoryPoller(
                tenant="p00", client=client, journal=journal, route=lambda e: [],
                state=state, turn=turn,
            )  # fmt: skip

        first = poller()
        await control(emulator, "faults", {"kind": "http_500", "count": 1,
                                            "path": "/cgi-bin/user/list"})  # fmt: skip
        polling = asyncio.ensure_future(first.poll())
        await eventually(lambda: len(turns) == 1, what="the first listing waits its turn")
        assert state.waiting and emulator.calls(corpid(0)) == []
        turns[0].set()
        assert await polling not in ("baseline", "changed", "unchanged")  # the fault
        assert not state.waiting and state.failures == 1
        polling = asyncio.ensure_future(first.poll())
        await eventually(lambda: len(turns) == 2, what="the retry waits its turn again")
        turns[1].set()
        assert await polling == "baseline"
        assert await first.poll() == "unchanged" and len(turns) == 2, "no turn once listed"
        takeover = asyncio.ensure_future(poller().poll())
        await eventually(lambda: len(turns) == 3, what="a new poller's first listing")
        turns[2].set()
        assert await takeover == "unchanged"
    assert [f.generation for f in emulator.token_fetches(corpid(0))] == [1]
