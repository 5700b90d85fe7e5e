"""Keeping Python's cyclic garbage collector off the relay's long-lived heap.

Why: every held ``listen`` lives for the whole hold (30 s or more), so its objects
survive the young generations and count towards the oldest one; when a wave of
renewals retires thousands of them, CPython runs a full collection that walks the
whole heap, listeners, clients, connections and modules included. With 10 000 idle
tenants that cost the relay about 1.3 ms of CPU per renewal against 0.43 ms after
freezing (``python -m bench --full --scenario idle``).

What: once start-up has settled (every listener knows its Ver and is listening, or
has failed, or ``settle_limit`` has passed), collect once and :func:`gc.freeze` what
is alive: those objects are left out of every later collection. Objects created
afterwards are collected as usual. The price is bounded and paid once: reference
cycles alive at that moment that become garbage later are not reclaimed (plain
reference counting still frees everything that is not a cycle).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Sequence
from typing import Protocol

__all__ = ["freeze_after_start"]

log = logging.getLogger("relay.runtime.heap")


class _Status(Protocol):
    @property
    def state(self) -> str: ...

    @property
    def ver(self) -> int | None: ...


class _HasStatus(Protocol):
    @property
    def status(self) -> _Status: ...


def _started(listener: _HasStatus) -> bool:
    """Past start-up: it knows its Ver (checkpoint or bootstrap done, listening now)
    or it has left "starting" some other way (failed, backing off); one ``waiting`` for
    its turn to bootstrap has not."""
    status = listener.status
    return status.ver is not None or status.state not in ("starting", "waiting")


async def freeze_after_start(
    listeners: Sequence[_HasStatus], *, settle_limit: float = 120.0, poll: float = 1.0
) -> int:
    """Freeze the heap once every listener is past start-up (or after
    ``settle_limit`` seconds); returns how many objects were frozen."""
    for _ in range(max(1, round(settle_limit / poll))):
        if all(_started(x) for x in listeners):
            break
        await asyncio.sleep(poll)  # a start-up wait, once: polling a status is enough
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("heap frozen after start-up", extra={"objects": frozen})
    return frozen
