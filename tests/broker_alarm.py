"""A real RabbitMQ resource alarm, for the tests of what the relay does under one.

The alarm is the broker's own: :class:`ResourceAlarm` raises the node's disk free limit
far above the free space (``rabbitmqctl set_disk_free_limit``), so the disk alarm goes
off and the broker blocks every publishing connection on the node, and puts the limit
it read at the start back to clear it. It is broker-wide: every publisher on this
machine is blocked while it is on, so tests keep it short (seconds), and it is cleared
whatever happens:

- :meth:`ResourceAlarm.on` clears it in a ``finally``;
- the ``resource_alarm`` fixture (tests/conftest.py) clears it again at teardown,
  with a plain blocking ``rabbitmqctl``, whatever the test or its event loop did;
- a run killed inside an alarm (SIGKILL, a lost runner) cannot run either: a detached
  shell started with the alarm puts the limit back after :data:`GUARD_SECONDS` unless
  the alarm was cleared first (then it is ended, by its process group id);
- a limit left at :data:`HUGE` all the same is not taken for the one to restore: the
  broker's default (50 MB) is put back instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator

__all__ = ["HUGE", "ResourceAlarm"]

#: The disk free limit that raises the alarm (1000 TB): above any disk, and recognisable.
HUGE = 10**15
DEFAULT_LIMIT = 50_000_000  # RabbitMQ's default disk_free_limit (50 MB)
#: How long an alarm may outlive the test run that raised it (longer than any test).
GUARD_SECONDS = 180
_READ_LIMIT = "rabbit_disk_monitor:get_disk_free_limit()."
_READ_ALARMS = "rabbit_alarm:get_alarms()."


def _ctl_sync(*args: str) -> str:
    done = subprocess.run(
        ["rabbitmqctl", *args], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, f"rabbitmqctl {args[0]} failed: {done.stderr}"
    return done.stdout.strip()


async def _ctl(*args: str) -> str:
    """``rabbitmqctl`` off the event loop (half a second each): the relay under test
    keeps its timing meanwhile."""
    proc = await asyncio.create_subprocess_exec(
        "rabbitmqctl", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, f"rabbitmqctl {args[0]} failed: {err.decode()}"
    return out.decode().strip()


class ResourceAlarm:
    """The disk alarm of the local RabbitMQ node, raised and cleared for real."""

    def __init__(self) -> None:
        limit = int(_ctl_sync("eval", _READ_LIMIT))
        #: The limit put back to clear the alarm.
        self.restore = DEFAULT_LIMIT if limit >= HUGE else limit
        self.raised_at: float | None = None  # monotonic: when it was set
        self.cleared_at: float | None = None  # and when it was cleared
        self._guard: subprocess.Popen[bytes] | None = None

    async def raise_(self) -> None:
        """Set the alarm and wait until the broker reports it."""
        self._start_guard()
        await _ctl("set_disk_free_limit", str(HUGE))
        self.raised_at = time.monotonic()
        for _ in range(100):
            if "disk" in await _ctl("eval", _READ_ALARMS):
                return
            await asyncio.sleep(0.1)
        raise AssertionError("the disk alarm did not go off")

    async def clear(self) -> None:
        """Put the limit back and wait until the broker has no alarm."""
        await _ctl("set_disk_free_limit", str(self.restore))
        self.cleared_at = time.monotonic()  # the broker re-checks the disk as it is set
        self._end_guard()
        for _ in range(100):
            if "disk" not in await _ctl("eval", _READ_ALARMS):
                return
            await asyncio.sleep(0.1)
        raise AssertionError("the disk alarm did not clear")

    def clear_sync(self) -> None:
        """:meth:`clear` without an event loop (the fixture's teardown)."""
        _ctl_sync("set_disk_free_limit", str(self.restore))
        self._end_guard()

    def _start_guard(self) -> None:
        """The detached shell that clears the alarm if this process cannot (see above)."""
        self._end_guard()
        restore = f"sleep {GUARD_SECONDS}; exec rabbitmqctl set_disk_free_limit {self.restore}"
        self._guard = subprocess.Popen(
            ["sh", "-c", restore],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _end_guard(self) -> None:
        guard, self._guard = self._guard, None
        if guard is not None and guard.poll() is None:
            os.killpg(guard.pid, signal.SIGKILL)  # its own group: the shell and its sleep
        if guard is not None:
            guard.wait()

    @contextlib.asynccontextmanager
    async def on(self) -> AsyncIterator[ResourceAlarm]:
        """The alarm for the length of the block, cleared however it is left."""
        try:
            await self.raise_()
            yield self
        finally:
            await self.clear()
