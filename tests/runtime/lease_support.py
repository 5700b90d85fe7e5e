"""Helpers for the lease tests: a proxy that can go silent, an ownership watch that
samples every manager for overlaps, and a polling wait with a deadline."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from relay.core.shards import LeaseChange
from relay.runtime.leases import LeaseManager
from tests.support import eventually

__all__ = ["FreezingProxy", "Recorder", "Watch", "wait_until"]


async def wait_until(predicate: Callable[[], bool], seconds: float, what: str) -> float:
    """:func:`tests.support.eventually`, timed: the seconds until ``predicate`` held."""
    start = time.monotonic()
    await eventually(predicate, seconds=seconds, what=what)
    return time.monotonic() - start


@dataclass
class Recorder:
    """An ``on_change`` callback that keeps every change with its monotonic time."""

    changes: list[tuple[float, LeaseChange]] = field(default_factory=list)

    def __call__(self, change: LeaseChange) -> None:
        self.changes.append((time.monotonic(), change))

    def released(self, reason: str) -> list[tuple[float, int]]:
        return [
            (t, c.shard) for t, c in self.changes if c.kind == "released" and c.reason == reason
        ]

    def acquired(self) -> list[int]:
        return [c.shard for _, c in self.changes if c.kind == "acquired"]


class Watch:
    """Samples ``owned`` of every manager every few milliseconds and keeps any moment at
    which two managers both claim a shard. Use as an async context manager."""

    def __init__(self, managers: Iterable[LeaseManager], every: float = 0.005) -> None:
        self.managers = list(managers)
        self.every = every
        self.samples = 0
        self.overlaps: list[str] = []
        self._task: asyncio.Task[None] | None = None

    def add(self, manager: LeaseManager) -> None:
        self.managers.append(manager)

    def check(self) -> None:
        seen: dict[int, str] = {}
        for m in self.managers:
            for shard in m.owned:
                if shard in seen:
                    self.overlaps.append(f"shard {shard}: {seen[shard]} and {m.replica_id}")
                seen[shard] = m.replica_id
        self.samples += 1

    async def _run(self) -> None:
        while True:
            self.check()
            await asyncio.sleep(self.every)

    async def __aenter__(self) -> Watch:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class FreezingProxy:
    """Forwards loopback connections to ``target``; :meth:`freeze` stops forwarding in
    both directions while keeping every socket open: a silent partition, which only
    heartbeats can detect (unlike a closed socket)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.frozen = asyncio.Event()  # new connections are frozen too
        self._frozen_links: set[int] = set()
        self._links = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    def freeze(self, *, new_connections: bool = True) -> None:
        """Silence every open connection; and every later one unless ``new_connections``
        is false (the path heals, but the old connections stay dead in the water)."""
        self._frozen_links.update(range(self._links))
        if new_connections:
            self.frozen.set()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in self._writers:
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers += [writer, up_writer]
        link, self._links = self._links, self._links + 1
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(link, src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, link: int, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                if self.frozen.is_set() or link in self._frozen_links:
                    # Swallow everything from now on; the sockets stay open.
                    continue
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
