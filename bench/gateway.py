"""The ``gateway`` scenario: the API gateway under load while mails flow.

One tenant, listened by the relay (RabbitMQ sink, the run's own consumer); mails are
injected at a steady rate while ``concurrency`` workers call the relay's gateway in a
loop for ``duration`` seconds, a mix of ``GET .../users/{email}``, ``GET
.../users/{email}/unread?max_age=1`` and ``POST .../openapi/user/get``.

Targets:

- ``relay``: the calls go through the relay's gateway (one ``[[clients]]`` key);
- ``direct``: the baseline, in the same invocation, with fresh processes: the relay
  listens and delivers the same mail flow *without* gateway load, and the same call
  mix goes straight at the emulator (``user/get``, ``mail/newcount``, ``user/get``)
  with one token of a second company the relay does not serve.

Reported: calls, calls/s, p50/p99 of the calls, non-200 answers, mails sent/delivered/
lost and their p99 latency, and the emulator's token fetches for the relay's tenant:
exactly 1 (the listener never lost its token), else the run fails, as does a lost mail.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import threading
import time
from typing import Any

import aiohttp

from bench import procs
from bench.procs import BenchError, Tenant

CLIENT_KEY = "bench-gateway-key-" + secrets.token_hex(8)


def _relay_config(path: Any, port: int, concurrency: int) -> None:
    text = path.read_text().replace(
        "[http]\nenabled = false", f'[http]\nhost = "127.0.0.1"\nport = {port}'
    )
    text += "\n".join(
        [
            "[gateway]",
            f"tenant_concurrency = {min(256, concurrency)}",
            'queue_timeout = "30s"',
            "[[clients]]",
            'name = "bench"',
            f'key = "{CLIENT_KEY}"',
            'scopes = ["read", "sso"]',
            "rate = 1000000",
            "burst = 1000000",
        ]
    )
    path.write_text(text + "\n")


def _token_fetches(emulator: procs.Emulator) -> int:
    state = emulator.session.get(f"{emulator.url}/_emulator/state", timeout=30).json()
    return int(state["requests"].get("/cgi-bin/token", 0))


class _Mails(threading.Thread):
    """Injects ``total`` mails to one user at ``rate``/s (the consumer's subject format)."""

    def __init__(self, emulator: procs.Emulator, to: str, rate: float, total: int) -> None:
        super().__init__(daemon=True)
        self.emulator, self.to, self.rate, self.total = emulator, to, rate, total
        self.sent = 0
        self.halt = threading.Event()
        self.error: Exception | None = None

    def run(self) -> None:
        start = time.monotonic()
        try:
            while not self.halt.is_set() and self.sent < self.total:
                due = min(self.total, int((time.monotonic() - start) * self.rate) + 1)
                if due > self.sent:
                    mails = [
                        {"to": self.to, "subject": f"bench|{i}|{time.time():.6f}"}
                        for i in range(self.sent, due)
                    ]
                    self.emulator.post("mail", {"mails": mails})
                    self.sent = due
                self.halt.wait(0.01)
        except Exception as exc:  # reported by the caller as a failed run
            self.error = exc


async def _load(
    calls: list[tuple[str, str, dict[str, Any] | None]],
    headers: dict[str, str],
    *,
    concurrency: int,
    duration: float,
) -> tuple[list[float], int]:
    """``concurrency`` workers cycling through ``calls`` for ``duration`` seconds."""
    latencies: list[float] = []
    failures = 0
    deadline = time.monotonic() + duration
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as http:

        async def worker(offset: int) -> None:
            nonlocal failures
            i = offset
            while time.monotonic() < deadline:
                method, url, body = calls[i % len(calls)]
                i += 1
                t0 = time.perf_counter()
                try:
                    async with http.request(method, url, data=body) as resp:
                        await resp.read()
                        ok = resp.status == 200
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                latencies.append(time.perf_counter() - t0)
                failures += not ok

        await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return latencies, failures


def _direct_token(emulator: procs.Emulator, tenant: Tenant) -> str:
    resp = emulator.session.post(
        f"{emulator.url}/cgi-bin/token",
        data={
            "grant_type": "client_credentials",
            "client_id": tenant.admin,
            "client_secret": tenant.key,
        },
        timeout=30,
    )
    token: str = resp.json()["access_token"]
    return token


def run(target: str, sizes: Any) -> dict[str, Any]:
    from bench.scenarios import percentile  # the one percentile of the harness

    run_id = secrets.token_hex(4)
    workdir = procs.workdir()
    served, other = procs.make_tenants(2, run_id)
    exchange, queue = procs.names(run_id)
    expect = int(sizes.gw_mail_rate * sizes.gw_duration)
    started: list[procs.Proc] = []
    ok = False
    try:
        emulator = procs.start_emulator(workdir, [served, other], sizes.hold)
        started.append(emulator.proc)
        consumer = procs.start_consumer(workdir, exchange, queue, expect, sizes.gw_duration + 120)
        started.append(consumer)
        config = procs.relay_config(workdir, emulator, [served], hold=sizes.hold, exchange=exchange)
        port = procs.free_port()
        _relay_config(config, port, sizes.gw_concurrency)
        argv = [procs.PYTHON, "-m", "relay", "run", "--config", str(config)]
        relay = procs.start("relay", argv, workdir)
        started.append(relay)
        emulator.wait_listens(1, 60, relay)
        user = served.user()
        if target == "relay":
            root = f"http://127.0.0.1:{port}/v1/tenants/{served.name}"
            calls: list[tuple[str, str, dict[str, Any] | None]] = [
                ("GET", f"{root}/users/{user}", None),
                ("GET", f"{root}/users/{user}/unread?max_age=1", None),
                ("POST", f"{root}/openapi/user/get", {"alias": user}),
            ]
            headers = {"Authorization": f"Bearer {CLIENT_KEY}"}
            direct_fetches = 0
        else:  # the same mix straight at the emulator, one token of the other company
            api = f"{emulator.url}/openapi"
            calls = [
                ("POST", f"{api}/user/get", {"Alias": other.user()}),
                ("POST", f"{api}/mail/newcount", {"Alias": other.user()}),
                ("POST", f"{api}/user/get", {"Alias": other.user()}),
            ]
            headers = {"Authorization": f"Bearer {_direct_token(emulator, other)}"}
            direct_fetches = 1
        mails = _Mails(emulator, user, sizes.gw_mail_rate, expect)
        mails.start()
        t0 = time.monotonic()
        try:
            latencies, failures = asyncio.run(
                _load(calls, headers, concurrency=sizes.gw_concurrency, duration=sizes.gw_duration)
            )
            wall = time.monotonic() - t0
        finally:
            mails.join(sizes.gw_duration + 60)
            mails.halt.set()
        if mails.error is not None:
            raise BenchError(f"injecting mails failed: {mails.error}")
        relay.check()
        fetches = _token_fetches(emulator) - direct_fetches
        received = procs.consumer_result(consumer, workdir, 90)
        lat_ms = [s * 1000 for s in latencies]
        mail_ms = [(r - e) * 1000 for _, e, r in received["records"]]
        lost = expect - int(received["received"])
        row = {
            "concurrency": sizes.gw_concurrency,
            "seconds": round(wall, 2),
            "calls": len(latencies),
            "calls_per_s": round(len(latencies) / wall, 1),
            "p50_ms": round(percentile(lat_ms, 0.50), 2),
            "p99_ms": round(percentile(lat_ms, 0.99), 2),
            "non_200": failures,
            "mails_sent": mails.sent,
            "mails_delivered": int(received["received"]),
            "lost": lost,
            "duplicates": received["duplicates"],
            "mail_p99_ms": round(percentile(mail_ms, 0.99), 2),
            "token_fetches": fetches,
        }
        if lost:
            raise BenchError(f"gateway/{target}: {lost} of {expect} mails lost ({workdir})")
        if fetches != 1:
            raise BenchError(
                f"gateway/{target}: {fetches} token fetches for the relay's tenant (expected 1)"
            )
        if failures:
            raise BenchError(f"gateway/{target}: {failures} calls did not answer 200")
        ok = True
        return row
    finally:
        for p in reversed(started):
            p.stop()
        with contextlib.suppress(Exception):
            procs.delete_amqp(exchange, queue)
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"  (logs of the failed run kept in {workdir})")
