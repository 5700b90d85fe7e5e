"""A delaying TCP proxy for the ``wan`` scenario (issue 20 item 3):
``python -m bench.delay_proxy --upstream PORT --delay-ms MS [--port PORT]``.

It listens on 127.0.0.1 only and forwards every connection to ``127.0.0.1:UPSTREAM``.
Each direction of each connection is a pipe with a fixed one-way delay: a reader
stamps every chunk it reads with ``arrival + delay`` and queues it; a writer sends the
chunks in order, each no earlier than its stamp. Reading never waits for the writer
(up to :data:`MAX_QUEUED` bytes in flight per direction, then TCP backpressure), so
the delay adds latency, not a throughput limit: a round trip costs ``2 × delay`` and a
stream of pipelined requests still flows at the rate the peers produce it. Byte order
is kept (one queue, one writer per direction); an EOF is forwarded (half-close) after
the same delay; a reset on one side closes both.

Started as a process by :mod:`bench.procs` (it prints ``ready`` once it listens), so
its CPU is neither the target's nor the harness's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time

HOST = "127.0.0.1"
CHUNK = 64 * 1024
MAX_QUEUED = 8 * 1024 * 1024  # bytes queued per direction before reading pauses


class _Pipe:
    """One direction of one connection: bytes in, the same bytes out ``delay`` later."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float):
        self._reader = reader
        self._writer = writer
        self._delay = delay
        self._queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        self._queued = 0
        self._room = asyncio.Event()
        self._room.set()

    async def _read(self) -> None:
        try:
            while True:
                await self._room.wait()
                data = await self._reader.read(CHUNK)
                self._queue.put_nowait((time.monotonic() + self._delay, data))
                if not data:  # EOF, forwarded in turn
                    return
                self._queued += len(data)
                if self._queued >= MAX_QUEUED:
                    self._room.clear()
        except (ConnectionError, OSError):
            self._queue.put_nowait((time.monotonic(), b""))

    async def _write(self) -> None:
        while True:
            due, data = await self._queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if self._writer.can_write_eof():
                    with contextlib.suppress(OSError):
                        self._writer.write_eof()
                return
            self._writer.write(data)
            await self._writer.drain()
            self._queued -= len(data)
            if self._queued < MAX_QUEUED:
                self._room.set()

    async def run(self) -> None:
        reading = asyncio.create_task(self._read())
        try:
            await self._write()
        finally:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading


class DelayProxy:
    """Listens on 127.0.0.1; forwards to ``127.0.0.1:upstream`` with ``delay`` seconds
    each way. Use as ``async with DelayProxy(...) as proxy: proxy.port``."""

    def __init__(self, upstream: int, delay: float, port: int = 0) -> None:
        if delay < 0:
            raise ValueError("delay must be 0 or more")
        self.upstream = upstream
        self.delay = delay
        self.port = port
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.accepted = 0  # connections accepted so far

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, HOST, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> DelayProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        self.accepted += 1
        up_writer: asyncio.StreamWriter | None = None
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, self.upstream)
            # Both directions run until each has forwarded its EOF; a reset ends both
            # (the task group cancels the other direction).
            async with asyncio.TaskGroup() as group:
                group.create_task(_Pipe(reader, up_writer, self.delay).run())
                group.create_task(_Pipe(up_reader, writer, self.delay).run())
        except* (ConnectionError, OSError):
            pass
        finally:
            self._connections.discard(task)
            for w in (writer, up_writer):
                if w is not None:
                    w.close()
                    with contextlib.suppress(Exception):
                        await w.wait_closed()


async def _serve(upstream: int, delay: float, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with DelayProxy(upstream, delay, port) as proxy:
        print("ready", flush=True)
        await stop.wait()
    # In the run's log: how many connections the target opened (keep-alive or not).
    print(f"accepted {proxy.accepted} connections", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.delay_proxy", description=__doc__)
    parser.add_argument("--upstream", type=int, required=True, help="port on 127.0.0.1")
    parser.add_argument("--delay-ms", type=float, required=True, help="one-way delay")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any)")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.upstream, args.delay_ms / 1000, args.port))


if __name__ == "__main__":
    main()
