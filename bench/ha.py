"""The ``ha`` scenario: how long a tenant goes without a ``listen`` when a replica dies.

``relay``: three ``exmail-relay run`` processes in lease mode (heartbeat 2 s) share N
tenants. ``kills`` times: kill -9 the replica owning the most shards, wait until each of
its tenants listens on another one, restart it (as Kubernetes recreates the pod) and
wait until the shards settle again. Then ``handoffs`` times the same with SIGTERM. The
gap of one move is the longest time any moved tenant had no listen open, from the
emulator's listen log (``/_emulator/listens/gaps``), on the machine's one monotonic
clock.

``static``: the baseline, one relay in static mode running every tenant. ``kills``
times: kill -9 it and start it again at once, the best a StatefulSet does (after a
node loss Kubernetes first waits minutes to evict the pod); the gap is measured the
same way over every tenant.

No figure here is a verdict: the tests in tests/ha hold the thresholds.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pika
import requests

from bench import procs
from bench.procs import AMQP_URL, BenchError, Emulator, Proc, Tenant
from relay.core.shards import shard_of

SHARDS = 16
HEARTBEAT = 2
# The deployment secret of the bench's replicas ([sharding] secret: lease mode needs one).
DEPLOYMENT_SECRET = secrets.token_urlsafe(32)


SECRET = "bench-ha-deployment-secret-0123"  # noqa: S105 - a bench-only secret


def _toml(value: Any) -> str:
    return json.dumps(value)


class Replica:
    """One relay process: its configuration, status port and (re)starts."""

    def __init__(self, name: str, workdir: Path, config: Path, port: int) -> None:
        self.name = name
        self.workdir = workdir
        self.config = config
        self.url = f"http://127.0.0.1:{port}/status.json"
        self.proc: Proc | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        argv = [procs.PYTHON, "-m", "relay", "run", "--config", str(self.config)]
        self.proc = procs.start(f"{self.name}-{self.starts}", argv, self.workdir)

    def owned(self) -> set[int] | None:
        try:
            doc = requests.get(self.url, timeout=5).json()
        except (requests.RequestException, ValueError):
            return None
        return set(doc["sharding"]["owned"]) if "sharding" in doc else set()

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` and wait for the exit; a SIGTERM must end in exit code 0."""
        assert self.proc is not None
        self.proc.popen.send_signal(sig)
        code = self.proc.popen.wait(30)
        if sig == signal.SIGTERM and code != 0:
            raise BenchError(f"{self.name} exited {code} on SIGTERM (log {self.proc.log})")


def _config(
    path: Path, emulator: Emulator, tenants: list[Tenant], *, hold: float, exchange: str, **kv: Any
) -> Path:
    lines = [
        "[journal]",
        f"path = {_toml(str(path.with_suffix('.sqlite3')))}",
        'synchronous = "normal"',
        "[http]",
        f"port = {kv.pop('port')}",
        "[log]",
        'level = "info"',
        'format = "json"',
        "[shutdown]",
        "timeout = 3",
        "[amqp]",
        "enabled = true",
        f"url = {_toml(AMQP_URL)}",
        f"exchange = {_toml(exchange)}",
        f"queue = {_toml(exchange)}",
        "[sharding]",
        *[f"{k} = {_toml(v)}" for k, v in kv.items()],
    ]
    for t in tenants:
        lines += [
            "[[tenants]]",
            f"name = {_toml(t.name)}",
            f"client_id = {_toml(t.admin)}",
            f"client_secret = {_toml(t.key)}",
            f"api_url = {_toml(emulator.url + '/openapi/')}",
            f"token_url = {_toml(emulator.url + '/cgi-bin/token')}",
            f"login_url = {_toml(emulator.url + '/cgi-bin/login')}",
            f"hold = {_toml(hold)}",
            # The emulator's listen log tells replicas apart by X-Relay-Replica (opt-in).
            "replica_header = true",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _get(emulator: Emulator, path: str, **query: Any) -> Any:
    resp = emulator.session.get(f"{emulator.url}/_emulator/{path}", params=query, timeout=30)
    if resp.status_code != 200:
        raise BenchError(f"emulator {path}: HTTP {resp.status_code} {resp.text[:300]}")
    return resp.json()


def listening(emulator: Emulator, after: float = 0.0) -> dict[str, set[str]]:
    """Replicas holding an open listen (opened after ``after``), per tenant admin."""
    out: dict[str, set[str]] = {}
    for listen in _get(emulator, "listens", since=time.monotonic())["listens"]:
        if listen["end"] is None and listen["start"] > after:
            out.setdefault(listen["company"], set()).add(listen["replica"])
    return out


def longest_gap(emulator: Emulator, tenants: list[Tenant], since: float) -> float:
    """The longest time since ``since`` that one of ``tenants`` had no listen open."""
    gaps = _get(emulator, "listens/gaps", since=since)["gaps"]
    admins = {t.admin for t in tenants}
    return max((g["seconds"] for g in gaps if g["company"] in admins), default=0.0)


def _wait(what: str, condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


@contextlib.contextmanager
def _world(n_tenants: int, hold: float) -> Iterator[tuple[Path, Emulator, list[Tenant], str]]:
    run_id = secrets.token_hex(4)
    workdir = procs.workdir()
    tenants = procs.make_tenants(n_tenants, run_id)
    name = f"bench.{run_id}.ha"
    emulator = procs.start_emulator(workdir, tenants, hold)
    ok = False
    try:
        yield workdir, emulator, tenants, name
        ok = True
    finally:
        emulator.proc.stop()
        with contextlib.suppress(Exception):
            _delete(name)
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"  (logs of the failed run kept in {workdir})")


def _delete(name: str) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = conn.channel()
        channel.queue_delete(name)
        for shard in range(16):
            channel.queue_delete(f"{name}.checkpoint.{shard}")
        channel.exchange_delete(name)
        channel.exchange_delete(f"{name}.presence")
    finally:
        conn.close()


def _settled(replicas: list[Replica], emulator: Emulator, tenants: list[Tenant]) -> bool:
    owned = [r.owned() for r in replicas]
    if any(o is None for o in owned):
        return False
    every = sorted(s for o in owned if o is not None for s in o)
    if every != list(range(SHARDS)):
        return False
    held = listening(emulator)
    for replica, shards in zip(replicas, owned, strict=True):
        assert shards is not None
        for t in tenants:
            if shard_of(t.name, SHARDS) in shards and held.get(t.admin) != {replica.name}:
                return False
    return True


def _moved(emulator: Emulator, tenants: list[Tenant], gone: str, since: float) -> bool:
    """Every tenant has a listen opened after ``since`` by a replica other than ``gone``."""
    held = listening(emulator, after=since)
    return all(held.get(t.admin, set()) - {gone} for t in tenants)


def _percentiles(prefix: str, values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        f"{prefix}_p50_s": round(ordered[len(ordered) // 2], 2),
        f"{prefix}_max_s": round(ordered[-1], 2),
    }


def lease(*, tenants: int, kills: int, handoffs: int, hold: float) -> dict[str, Any]:
    with _world(tenants, hold) as (workdir, emulator, ts, name):
        replicas = []
        for n in range(1, 4):
            port = procs.free_port()
            config = _config(
                workdir / f"r{n}.toml",
                emulator,
                ts,
                hold=hold,
                exchange=name,
                port=port,
                replica_id=f"r{n}",
                prefix=name,
                heartbeat=HEARTBEAT,
                shards=SHARDS,
                secret=DEPLOYMENT_SECRET,
            )
            replicas.append(Replica(f"r{n}", workdir, config, port))
        try:
            for r in replicas:
                r.start()
            _wait("3 replicas to settle", lambda: _settled(replicas, emulator, ts), 120)
            moves: dict[str, list[float]] = {"takeover": [], "handoff": []}
            for kind, sig, count in (
                ("takeover", signal.SIGKILL, kills),
                ("handoff", signal.SIGTERM, handoffs),
            ):
                for _ in range(count):
                    owned = {r.name: r.owned() or set() for r in replicas}
                    tenants_of = {
                        r.name: [t for t in ts if shard_of(t.name, SHARDS) in owned[r.name]]
                        for r in replicas
                    }
                    victim = max(
                        replicas, key=lambda r: (len(tenants_of[r.name]), len(owned[r.name]))
                    )
                    moved = tenants_of[victim.name]
                    since = time.monotonic()
                    victim.signal(sig)
                    _wait(
                        "the moved tenants to listen elsewhere",
                        lambda m=moved, v=victim.name, s=since: _moved(emulator, m, v, s),
                        60,
                    )
                    moves[kind].append(longest_gap(emulator, moved, since))
                    victim.start()
                    _wait("the shards to settle", lambda: _settled(replicas, emulator, ts), 120)
        finally:
            for r in replicas:
                if r.proc is not None:
                    r.proc.stop()
    return {
        "tenants": tenants,
        "replicas": 3,
        "kills": kills,
        "handoffs": handoffs,
        **_percentiles("takeover", moves["takeover"]),
        **_percentiles("handoff", moves["handoff"]),
    }


def static(*, tenants: int, kills: int, hold: float) -> dict[str, Any]:
    with _world(tenants, hold) as (workdir, emulator, ts, name):
        port = procs.free_port()
        config = _config(
            workdir / "static.toml", emulator, ts, hold=hold, exchange=name, port=port,
            mode="static",
        )  # fmt: skip
        relay = Replica("static", workdir, config, port)
        gaps = []
        try:
            relay.start()
            _wait("the relay to listen", lambda: len(listening(emulator)) == len(ts), 120)
            for _ in range(kills):
                since = time.monotonic()
                relay.signal(signal.SIGKILL)
                relay.start()
                _wait(
                    "every tenant to listen again",
                    lambda s=since: _moved(emulator, ts, "", s),
                    120,
                )
                gaps.append(longest_gap(emulator, ts, since))
        finally:
            if relay.proc is not None:
                relay.proc.stop()
    return {"tenants": tenants, "replicas": 1, "kills": kills, **_percentiles("takeover", gaps)}
