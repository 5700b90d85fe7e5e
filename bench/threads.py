"""Where the relay's CPU goes, by thread: ``python -m bench.threads [--sink amqp|console]``.

Runs the emulator as a subprocess and the relay in this process (one tenant, the real
journal, the chosen sink), injects ``--events`` mails in bulk (or paced at ``--rate``
mails/s, where each listen answer carries a mail or two), waits until every one is
journaled and delivered, and prints the relay's CPU per event split by thread (the
event loop, the journal's writer ``journal_0`` and reader ``journal-read_0``) from
``/proc/self/task``. The mails are posted from a thread of the harness's own, whose CPU
is left out of the relay's figures. Running it with
``--sink amqp`` and ``--sink console`` in one invocation (the default) separates the
cost of publishing to RabbitMQ from the rest of the pipeline.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import aio_pika
import aiohttp

from bench.procs import free_port
from relay.app.settings import Settings
from relay.app.wiring import build_service

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


INJECTOR = "bench-injector"  # the harness's own thread: its CPU is not the relay's


def _thread_cpu() -> dict[str, float]:
    """CPU seconds by thread, named by their Python thread names (``journal_0`` is the
    journal's writer, ``journal-read_0`` its reader)."""
    ticks = os.sysconf("SC_CLK_TCK")
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    base = Path(f"/proc/{os.getpid()}/task")
    for task in base.iterdir():
        stat = (task / "stat").read_text().rsplit(")", 1)[1].split()
        tid = int(task.name)
        role = "event loop" if tid == os.getpid() else names.get(tid, f"thread {tid}")
        out[role] = out.get(role, 0.0) + (int(stat[11]) + int(stat[12])) / ticks
    return out


def _inject(base: str, users: list[str], events: int, rate: float) -> None:
    """Post the mails to the emulator, in bulk (1000 per request) or paced at ``rate``
    mails/s in 10 ms steps. Runs on its own thread and loop, so that the harness's HTTP
    requests are not counted as the relay's CPU."""

    async def post_all() -> None:
        wall0 = time.perf_counter()
        step = 1000 if rate <= 0 else max(1, round(rate / 100))
        async with aiohttp.ClientSession() as session:
            for start in range(0, events, step):
                mails = [
                    {"to": users[i % len(users)], "subject": "s" * 40, "summary": "m" * 80}
                    for i in range(start, min(events, start + step))
                ]
                async with session.post(base + "/_emulator/mail", json={"mails": mails}):
                    pass
                if rate > 0:
                    lag = wall0 + (start + step) / rate - time.perf_counter()
                    await asyncio.sleep(max(0.0, lag))

    asyncio.run(post_all())


async def measure(sink: str, events: int, rate: float = 0.0) -> dict[str, float]:
    port = free_port()
    emulator = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "relay",
        "emulator",
        "--port",
        str(port),
        "--hold",
        "2",
        stdout=asyncio.subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    name = f"bench.threads.{uuid.uuid4().hex[:8]}"
    try:
        await asyncio.sleep(1.5)
        with tempfile.TemporaryDirectory() as tmp:
            sinks: dict[str, object] = (
                {"amqp": {"enabled": True, "exchange": name, "queue": name}}
                if sink == "amqp"
                else {"console": {"enabled": True}}
            )
            settings = Settings(
                journal={"path": Path(tmp) / "journal.sqlite3"},
                tenants=[
                    {
                        "name": "t",
                        "client_id": "admin@example.com",
                        "client_secret": "exmail-demo-key",
                        "api_url": base + "/openapi/",
                        "token_url": base + "/cgi-bin/token",
                        "login_url": base + "/cgi-bin/login",
                        "hold": 2,
                    }
                ],
                http={"enabled": False},
                sharding={"mode": "static"},  # one relay, listeners from the start
                **sinks,
            )
            result = await _run(settings, base, events, rate, io.StringIO())
    finally:
        emulator.terminate()
        await emulator.wait()
        if sink == "amqp":
            connection = await aio_pika.connect(AMQP_URL)
            async with connection:
                channel = await connection.channel()
                await channel.queue_delete(name)
                await channel.exchange_delete(name)
    return result


async def _until(predicate: Callable[[], bool]) -> None:
    """Poll ``predicate`` every 20 ms (a harness wait, not a hot path)."""
    while True:
        if predicate():
            return
        await asyncio.sleep(0.02)


async def _run(
    settings: Settings, base: str, events: int, rate: float, out: io.StringIO
) -> dict[str, float]:
    async with build_service(settings, console_stream=out) as running:
        stop = asyncio.Event()
        task = asyncio.create_task(running.service.run(stop))
        listener = running.service.listeners[0]
        await _until(lambda: listener.status.state == "connected")
        async with aiohttp.ClientSession() as session:
            async with session.get(base + "/_emulator/state") as resp:
                state = await resp.json()
            users = [a["alias"] for a in state["companies"][0]["accounts"]]
            threads0, wall0 = _thread_cpu(), time.perf_counter()
            injector = threading.Thread(
                target=_inject, args=(base, users, events, rate), name=INJECTOR, daemon=True
            )
            injector.start()
            journal = running.service.journal
            await _until(
                lambda: (
                    listener.status.events_by_type.get("exmail.mail.new", 0) >= events
                    and not journal.backlog_events
                )
            )
            threads1, wall1 = _thread_cpu(), time.perf_counter()
            await asyncio.to_thread(injector.join)
        stop.set()
        await task
    spent = {key: value - threads0.get(key, 0.0) for key, value in threads1.items()}
    relay = {key: value for key, value in spent.items() if key != INJECTOR}
    out = {"wall_s": wall1 - wall0, "cpu_us_per_event": 1e6 * sum(relay.values()) / events}
    for key, value in relay.items():
        if value > 0.005:
            out[f"{key} us/event"] = 1e6 * value / events
    return out


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.threads", description=__doc__)
    parser.add_argument("--sink", choices=("amqp", "console"), action="append")
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument(
        "--rate", type=float, default=0.0, help="mails/s, paced (default: all at once)"
    )
    args = parser.parse_args()
    for sink in args.sink or ["amqp", "console"]:
        result = asyncio.run(measure(sink, args.events, args.rate))
        paced = f" at {args.rate:g}/s" if args.rate > 0 else ", all at once"
        print(f"-- sink {sink}, {args.events} events{paced}")
        for key, value in result.items():
            print(f"   {key:<36} {value:10.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
