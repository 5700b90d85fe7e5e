"""DirectoryPollers' stop: a release gate that comes after the release event still waits
for the poller that event stopped (a poll under way ends before the lease goes), and a
stop cancelled while waiting leaves no task unowned. No I/O: a fake poller."""

from __future__ import annotations

import asyncio
from typing import Any

from relay.runtime.directory2 import PollState
from relay.runtime.polling import DirectoryPollers


class SlowPoller:
    """Takes ``linger`` seconds to finish after it is told to stop."""

    def __init__(self, tenant: str, state: PollState, linger: float) -> None:
        self.tenant, self.state, self.linger = tenant, state, linger
        self.stopped = False
        self.finished = False
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self.stopped = True
        self._stop.set()

    async def run(self) -> None:
        await self._stop.wait()
        await asyncio.sleep(self.linger)  # a commit under way
        self.finished = True

    async def wait_stopped(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def pollers(linger: float, made: list[SlowPoller]) -> DirectoryPollers:
    def make(tenant: str, state: PollState) -> Any:
        poller = SlowPoller(tenant, state, linger)
        made.append(poller)
        return poller

    states = {"t": PollState(tenant="t", interval=60.0)}
    return DirectoryPollers(states=states, make_poller=make, stop_timeout=5.0)


async def test_a_second_stop_waits_for_the_poller_the_first_one_stopped() -> None:
    made: list[SlowPoller] = []
    group = pollers(0.3, made)
    group._start(["t"])
    await asyncio.sleep(0)
    first = asyncio.create_task(group._stop(["t"]))  # the release event
    await asyncio.sleep(0.05)
    await group._stop(["t"])  # the release gate, later
    assert made[0].finished, "the gate returned while the poller was still finishing"
    await first
    assert group.running == frozenset() and not group._stopping


async def test_a_stop_cancelled_while_waiting_leaves_the_task_owned() -> None:
    made: list[SlowPoller] = []
    group = pollers(30.0, made)
    group._start(["t"])
    await asyncio.sleep(0)
    gate = asyncio.create_task(group._stop(["t"]))
    await asyncio.sleep(0.05)
    gate.cancel()  # the release gate's grace ran out
    await asyncio.gather(gate, return_exceptions=True)
    assert "t" in group._stopping, "the stopped poller's task is still owned"
    await group._stop(["t"])  # the final stop awaits it
    assert not group._stopping
