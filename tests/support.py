"""Helpers shared by every test package: :func:`eventually`, the one way a test waits for
something to happen; :func:`recorded_sockets`, which sees every connection this process
opens; a stoppable TCP proxy (to take RabbitMQ away and give it back); a relay service
running in-process; and the address of the test broker."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import shutil
import sys
import threading
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aio_pika

from relay.app.settings import Settings
from relay.app.wiring import Running, build_service
from relay.ops.metrics import PrometheusObserver

__all__ = [
    "AMQP_URL",
    "BROKER_ADDRESS",
    "SocketUse",
    "TcpProxy",
    "chromium",
    "eventually",
    "recorded_sockets",
    "running_relay",
]

# The broker every rabbitmq-marked test uses. RELAY_TEST_AMQP_URL points the suite
# elsewhere; ``-m "not rabbitmq"`` with a closed port there proves that no unmarked
# test needs a broker (tests/conftest.py also fails an unmarked test that connects).
AMQP_URL = os.environ.get("RELAY_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
#: The deployment secret of every lease-mode relay in the tests ([sharding] secret).
DEPLOYMENT_SECRET = "test-deployment-secret-0123456789"
BROKER_ADDRESS = (urlsplit(AMQP_URL).hostname or "127.0.0.1", urlsplit(AMQP_URL).port or 5672)

T = TypeVar("T")

POLL = 0.05


async def eventually(
    condition: Callable[[], Awaitable[T] | T], *, seconds: float = 20.0, what: str
) -> T:
    """Poll ``condition`` (sync or async) until it returns something truthy; return that.

    Fails after ``seconds`` with ``what`` and the last value the condition returned. The
    one polling loop of the suite: tests wait for a condition or an event, never for a
    fixed time.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if loop.time() > deadline:
            raise AssertionError(
                f"timed out after {seconds:g}s waiting for {what} (last value: {value!r})"
            )
        await asyncio.sleep(POLL)


@dataclass(frozen=True)
class SocketUse:
    """One ``socket.connect`` (``target`` is the address) or ``socket.getaddrinfo``
    (``target`` is ``(host, port)``); ``stack`` is where, when the recorder asked."""

    event: str
    target: Any
    stack: str = field(default="", repr=False)


@dataclass
class _Recorder:
    keep: Callable[[SocketUse], bool]
    stacks: bool
    seen: list[SocketUse] = field(default_factory=list)


_RECORDERS: list[_Recorder] = []
_RECORDERS_LOCK = threading.Lock()
_SOCKET_EVENTS = frozenset({"socket.connect", "socket.getaddrinfo"})


def _audit(event: str, args: tuple[Any, ...]) -> None:
    # Runs for every audited event of the process: leave the others at once.
    if event not in _SOCKET_EVENTS or not _RECORDERS:
        return
    use = SocketUse(event, args[1] if event == "socket.connect" else (args[0], args[1]))
    with _RECORDERS_LOCK:
        for recorder in _RECORDERS:
            if recorder.keep(use):
                stack = "".join(traceback.format_stack(limit=12)[:-1]) if recorder.stacks else ""
                recorder.seen.append(SocketUse(use.event, use.target, stack))


sys.addaudithook(_audit)  # once per process: this module is imported once


@contextlib.contextmanager
def recorded_sockets(
    keep: Callable[[SocketUse], bool] = lambda use: True, *, stacks: bool = False
) -> Iterator[list[SocketUse]]:
    """The connections (and name lookups) this process makes inside the block, from any
    thread, that ``keep`` selects; with ``stacks``, each with the stack that made it."""
    recorder = _Recorder(keep, stacks)
    with _RECORDERS_LOCK:
        _RECORDERS.append(recorder)
    try:
        yield recorder.seen
    finally:
        with _RECORDERS_LOCK:
            _RECORDERS.remove(recorder)


class TcpProxy:
    """Forwards loopback connections to ``target``; :meth:`stop` drops every connection and
    closes the port, :meth:`start` opens the same port again.

    :meth:`stall` is a silent partition instead of a refused one: connections stay open
    (new ones are accepted) but no byte, and no close, is passed on in either direction
    until :meth:`resume`, which passes on what was held. ``delay``: seconds each chunk
    waits before it is passed on (a slow link)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self.delay = 0.0

    @property
    def stalled(self) -> bool:
        return not self._flowing.is_set()

    def stall(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

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

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    data = await src.read(65536)
                except (OSError, asyncio.IncompleteReadError):
                    data = b""
                await self._flowing.wait()  # stalled: hold the bytes, and the close too
                if not data:
                    break
                if self.delay:
                    await asyncio.sleep(self.delay)
                dst.write(data)
                await dst.drain()
        except OSError:
            pass
        finally:
            dst.transport.abort()


@contextlib.asynccontextmanager
async def running_relay(
    s: Settings, *, observer: PrometheusObserver | None = None
) -> AsyncIterator[Running]:
    """The relay built from ``s``, running until the block ends."""
    async with build_service(s, observer=observer) as running:
        stop = asyncio.Event()
        task = asyncio.create_task(running.service.run(stop))
        try:
            yield running
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)


async def chromium(*args: str) -> str:
    """Run headless Chromium (Debian's, installed by ``.ci/test``) with ``args``; its
    stdout. The flags keep it off the network this machine does not have."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    assert binary is not None, "chromium is required (apt-get install -y chromium)"
    proc = await asyncio.create_subprocess_exec(
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 45)
    assert proc.returncode == 0
    return out.decode()


async def delete_lease_names(
    prefix: str, *, shards: int = 16, listings: Iterable[str] = ()
) -> None:
    """Delete what relays of lease ``prefix`` (and a sink exchange and queue of that
    name) declared on the broker: the sink's exchange and queue, the presence exchange,
    the ``shards`` checkpoint queues and the listing queues of ``listings`` (tenants).
    Names nobody declared are no error."""
    connection = await aio_pika.connect(AMQP_URL, timeout=10)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(prefix)
        await channel.exchange_delete(prefix)
        await channel.exchange_delete(f"{prefix}.presence")
        for tenant in listings:
            await channel.queue_delete(f"{prefix}.listing.{tenant}")
        for shard in range(shards):
            await channel.queue_delete(f"{prefix}.checkpoint.{shard}")
