"""Helpers shared by the test packages that run a relay: a stoppable TCP proxy (to
take RabbitMQ away and give it back) and a relay service running in-process."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from relay.app.settings import Settings
from relay.app.wiring import Running, build_service

__all__ = ["TcpProxy", "running_relay"]


class TcpProxy:
    """Forwards loopback connections to ``target``; :meth:`stop` drops every connection and
    closes the port, :meth:`start` opens the same port again."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            dst.transport.abort()


@contextlib.asynccontextmanager
async def running_relay(s: Settings) -> AsyncIterator[Running]:
    """The relay built from ``s``, running until the block ends."""
    async with build_service(s) as running:
        stop = asyncio.Event()
        task = asyncio.create_task(running.service.run(stop))
        try:
            yield running
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)
