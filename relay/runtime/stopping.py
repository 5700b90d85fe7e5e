"""Awaiting something until a stop event, whichever comes first.

Where it sits: the loops that a ``stop()`` must be able to interrupt mid-call — the
directory worker's expansions (:mod:`relay.runtime.directory`) and the api2 directory
poller's listings (:mod:`relay.runtime.directory2`) — await their work through
:func:`until_stopped`: the work is cancelled and awaited when the stop comes first, so
no task outlives its owner and nothing half-done is committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["until_stopped"]

T = TypeVar("T")


async def until_stopped(awaitable: Awaitable[T], stop: asyncio.Event) -> T | None:
    """``awaitable``'s result (or its exception), or None if ``stop`` was set first (it
    is then cancelled and awaited)."""
    task = asyncio.ensure_future(awaitable)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((task, stopped), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not task.done():
            task.cancel()
        await asyncio.gather(task, stopped, return_exceptions=True)
    if task.cancelled():
        return None
    return task.result()
