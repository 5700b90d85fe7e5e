"""Processes of one benchmark run: the emulator, the target (relay, durable-floor, floor
or naive), the RabbitMQ consumer and the webhook receivers, plus the /proc readings (CPU,
RSS) taken from the target's own process. No third-party process library: /proc is
enough on Linux.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import select
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pika
import requests

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
PYTHON = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Set by ``--profile DIR``: every target then runs under cProfile (slower; figures not valid).
PROFILE_DIR: Path | None = None


class BenchError(Exception):
    """A run could not complete: a process died, a wait timed out, an event was lost."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """user + sys CPU of one process, from /proc/<pid>/stat (fields 14 and 15)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_seconds_of(pids: Sequence[int], last: dict[int, float]) -> float:
    """The summed CPU of ``pids``; a process that has exited counts with its last
    reading in ``last`` (updated here), so a sum taken after it exits stays whole."""
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):  # exited: keep the last
            last[pid] = cpu_seconds(pid)
    return sum(last.get(pid, 0.0) for pid in pids)


def local_broker_pid() -> int | None:
    """The pid of the local RabbitMQ node (``beam.smp`` running ``rabbit``), when the
    benchmarks' broker is this machine's; None when it cannot be found (then the
    broker's CPU is not in the harness's figure, and the figure says so)."""
    if "@127.0.0.1:" not in AMQP_URL and "@localhost:" not in AMQP_URL:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"beam.smp") and b"rabbit" in argv:
            return int(entry.name)
    return None


def runqueue_wait_s(pid: int) -> float:
    """Seconds the threads of ``pid`` have waited runnable for a CPU (the second field
    of each ``/proc/<pid>/task/<tid>/schedstat``): on a shared machine, time a process
    was ready to work and not scheduled. Threads that already exited are not counted."""
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(stat.read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def names(run_id: str) -> tuple[str, str]:
    """(exchange, queue) unique to one run."""
    return f"bench.{run_id}.x", f"bench.{run_id}.q"


def delete_amqp(exchange: str, queue: str) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = conn.channel()
        channel.queue_delete(queue)
        channel.exchange_delete(exchange)
    finally:
        conn.close()


@dataclass
class Proc:
    """A started program whose stderr goes to a log file in the run's directory."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def check(self) -> None:
        if self.popen.poll() is not None:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise BenchError(f"{self.name} exited with {self.popen.returncode}:\n{tail}")

    def wait_line(self, expected: str, timeout: float) -> None:
        """Wait for a line on stdout (the programs print ``ready``)."""
        assert self.popen.stdout is not None
        fd = self.popen.stdout.fileno()
        deadline = time.monotonic() + timeout
        buffer = b""
        while time.monotonic() < deadline:
            readable, _, _ = select.select([fd], [], [], 0.1)
            if readable:
                chunk = os.read(fd, 4096)
                buffer += chunk
                if expected.encode() in buffer.splitlines():
                    return
                if not chunk:
                    time.sleep(0.1)
            self.check()
        raise BenchError(f"{self.name}: no {expected!r} within {timeout}s")

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        return self.popen.returncode


def start(name: str, argv: list[str], workdir: Path, *, pipe: bool = False) -> Proc:
    """Start ``argv``; stderr (and stdout unless ``pipe``) go to ``<name>.log``, so a
    chatty program never blocks on a full pipe nobody reads."""
    log = workdir / f"{name}.log"
    with log.open("w") as err:
        popen = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE if pipe else err,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
    return Proc(name, popen, log)


@dataclass(frozen=True)
class Tenant:
    name: str
    admin: str
    key: str
    domain: str

    def user(self, index: int = 0) -> str:
        return f"u{index}@{self.domain}"


def make_tenants(count: int, run_id: str) -> list[Tenant]:
    return [
        Tenant(
            name=f"t{i}",
            admin=f"admin@t{i}.{run_id}.bench.test",
            key=f"key-{i}-{secrets.token_hex(6)}",
            domain=f"t{i}.{run_id}.bench.test",
        )
        for i in range(count)
    ]


@dataclass
class Emulator:
    proc: Proc
    url: str
    session: requests.Session = field(default_factory=requests.Session)

    def post(self, path: str, body: Any) -> Any:
        resp = self.session.post(f"{self.url}/_emulator/{path}", json=body, timeout=60)
        if resp.status_code != 200:
            raise BenchError(f"emulator {path}: HTTP {resp.status_code} {resp.text[:300]}")
        return resp.json()

    def open_listens(self) -> int:
        resp = self.session.get(f"{self.url}/_emulator/state", timeout=30)
        return int(resp.json()["open_listens"])

    def listen_requests(self) -> int:
        """``listen`` requests the emulator has received since it started."""
        resp = self.session.get(f"{self.url}/_emulator/state", timeout=30)
        return int(resp.json()["requests"].get("/openapi/listen", 0))

    def wait_listens(self, count: int, timeout: float, target: Proc) -> float:
        """Seconds until ``count`` listens are held, polling the emulator's state."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.open_listens() >= count:
                return time.monotonic() - started
            target.check()
            time.sleep(0.1 if count <= 100 else 0.5)  # the state of many tenants is big
        raise BenchError(f"{target.name}: fewer than {count} listens open after {timeout}s")


def start_emulator(workdir: Path, tenants: list[Tenant], hold: float) -> Emulator:
    seed = {
        "companies": [
            {"admin": t.admin, "key": t.key, "domains": [t.domain], "users": [{"alias": t.user()}]}
            for t in tenants
        ]
    }
    seed_path = workdir / "seed.json"
    seed_path.write_text(json.dumps(seed))
    port = free_port()
    argv = [PYTHON, "-m", "relay", "emulator", "--port", str(port), "--hold", str(hold)]
    proc = start("emulator", [*argv, "--data", str(seed_path)], workdir)
    emulator = Emulator(proc, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        proc.check()
        try:
            emulator.open_listens()
        except requests.ConnectionError:
            time.sleep(0.1)
            continue
        return emulator
    raise BenchError("the emulator did not start within 30s")


def start_consumer(
    workdir: Path,
    exchange: str,
    queue: str,
    expect: int,
    timeout: float,
    extra: Sequence[str] = (),
) -> Proc:
    """bench/consumer.py on the run's exchange and queue; ``extra``: more of its options."""
    argv = [PYTHON, "-m", "bench.consumer", "--url", AMQP_URL, "--exchange", exchange]
    argv += ["--queue", queue, "--expect", str(expect), "--timeout", str(timeout), *extra]
    proc = start("consumer", [*argv, "--out", str(workdir / "consumer.json")], workdir, pipe=True)
    try:
        proc.wait_line("ready", 30)
    except BaseException:
        proc.stop()
        raise
    return proc


def consumer_result(proc: Proc, workdir: Path, timeout: float) -> dict[str, Any]:
    try:
        proc.popen.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.stop()
    out = workdir / "consumer.json"
    if not out.exists():
        proc.check()
        raise BenchError("the consumer wrote no result")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


@dataclass(frozen=True)
class Route:
    """Where a target reaches Exmail and the broker when not directly (the ``wan``
    scenario's delay proxies), and the proxies' processes."""

    exmail_url: str
    amqp_url: str
    proxies: tuple[Proc, ...]


def start_delay_proxy(workdir: Path, name: str, upstream: int, delay_ms: float) -> tuple[Proc, int]:
    """A :mod:`bench.delay_proxy` process in front of ``127.0.0.1:upstream``; its port."""
    port = free_port()
    argv = [PYTHON, "-m", "bench.delay_proxy", "--upstream", str(upstream), "--port", str(port)]
    proc = start(name, [*argv, "--delay-ms", str(delay_ms)], workdir, pipe=True)
    try:
        proc.wait_line("ready", 30)
    except BaseException:
        proc.stop()
        raise
    return proc, port


def start_wan(workdir: Path, emulator: Emulator, exmail_ms: float, broker_ms: float) -> Route:
    """Delay proxies in front of the emulator and of RabbitMQ (one-way delays in ms)."""
    exmail, exmail_port = start_delay_proxy(
        workdir, "exmail-proxy", int(emulator.url.rsplit(":", 1)[1]), exmail_ms
    )
    try:
        broker, broker_port = start_delay_proxy(
            workdir, "broker-proxy", int(AMQP_URL.rsplit(":", 1)[1].rstrip("/")), broker_ms
        )
    except BaseException:
        exmail.stop()
        raise
    return Route(
        f"http://127.0.0.1:{exmail_port}",
        f"amqp://guest:guest@127.0.0.1:{broker_port}/",
        (exmail, broker),
    )


def _toml(value: Any) -> str:
    return json.dumps(value)  # a JSON string or number is a valid TOML value


def relay_config(
    workdir: Path,
    emulator: Emulator,
    tenants: list[Tenant],
    *,
    hold: float,
    exchange: str | None,
    webhooks: Sequence[dict[str, Any]] = (),
    route: Route | None = None,
) -> Path:
    exmail_url = emulator.url if route is None else route.exmail_url
    amqp_url = AMQP_URL if route is None else route.amqp_url
    lines = [
        "[journal]",
        f"path = {_toml(str(workdir / 'journal.sqlite3'))}",
        "[http]",
        "enabled = false",
        "[log]",
        'level = "warning"',
        'format = "json"',
        # One relay measured against one baseline: static, as the figures in
        # docs/benchmarks.md always were (lease mode is the default with [amqp]; the
        # ha scenario measures it).
        "[sharding]",
        'mode = "static"',
        "[amqp]",
    ]
    if exchange is not None:
        lines += ["enabled = true", f"url = {_toml(amqp_url)}", f"exchange = {_toml(exchange)}"]
        lines += ["declare_queue = false"]  # the consumer declares and binds its queue
    else:
        lines += ["enabled = false"]
    for t in tenants:
        lines += [
            "[[tenants]]",
            f"name = {_toml(t.name)}",
            f"client_id = {_toml(t.admin)}",
            f"client_secret = {_toml(t.key)}",
            f"api_url = {_toml(exmail_url + '/openapi/')}",
            f"token_url = {_toml(exmail_url + '/cgi-bin/token')}",
            f"login_url = {_toml(exmail_url + '/cgi-bin/login')}",
            f"hold = {_toml(hold)}",
        ]
    for hook in webhooks:
        lines += ["[[webhooks]]"] + [f"{k} = {_toml(v)}" for k, v in hook.items()]
    path = workdir / "relay.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def baseline_spec(
    workdir: Path,
    emulator: Emulator,
    tenants: list[Tenant],
    *,
    hold: float,
    exchange: str,
    route: Route | None = None,
) -> Path:
    exmail_url = emulator.url if route is None else route.exmail_url
    spec = {
        "amqp_url": AMQP_URL if route is None else route.amqp_url,
        "exchange": exchange,
        "hold": hold,
        "journal": str(workdir / "journal.sqlite3"),  # durable-floor's only
        "tenants": [
            {
                "name": t.name,
                "client_id": t.admin,
                "client_secret": t.key,
                "api_url": exmail_url + "/openapi/",
                "token_url": exmail_url + "/cgi-bin/token",
            }
            for t in tenants
        ],
    }
    path = workdir / "baseline.json"
    path.write_text(json.dumps(spec))
    return path


def start_target(
    target: str,
    workdir: Path,
    emulator: Emulator,
    tenants: list[Tenant],
    *,
    hold: float,
    exchange: str | None,
    webhooks: Sequence[dict[str, Any]] = (),
    route: Route | None = None,
) -> Proc:
    if target == "relay":
        config = relay_config(
            workdir, emulator, tenants, hold=hold, exchange=exchange, webhooks=webhooks, route=route
        )
        return start_relay(config, workdir)
    assert exchange is not None
    spec = baseline_spec(workdir, emulator, tenants, hold=hold, exchange=exchange, route=route)
    argv = ["-m", "bench." + target.replace("-", "_"), str(spec)]  # bench/durable_floor.py
    if PROFILE_DIR is not None:  # the baselines too, so profiles compare like with like
        argv = ["-m", "cProfile", "-o", str(PROFILE_DIR / f"{target}-{workdir.name}.pstats"), *argv]
    return start(target, [PYTHON, *argv], workdir)


def start_relay(config: Path, workdir: Path) -> Proc:
    """``exmail-relay run`` on ``config`` (under cProfile with ``--profile``)."""
    argv = ["-m", "relay", "run", "--config", str(config)]
    if PROFILE_DIR is not None:  # cProfile writes its stats when the relay exits cleanly
        stats = PROFILE_DIR / f"relay-{workdir.name}.pstats"
        argv = ["-m", "cProfile", "-o", str(stats), *argv]
    return start("relay", [PYTHON, *argv], workdir)


def workdir(root: Path | None = None) -> Path:
    return Path(tempfile.mkdtemp(prefix="exmail-bench-", dir=root))
