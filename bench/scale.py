"""The ``scale`` scenario (issue 20 item 4): many tenants over lease replicas on one machine.

Three (``replicas``) ``exmail-relay run`` processes in lease mode share ``tenants``
emulator tenants (default 5,000), all started at once on fresh journals (so every tenant
needs a token and a bootstrap). Figures:

- ``cold_start_s``: from the start of the processes to the moment the last tenant's
  first listen reached the emulator (from its listen log);
- ``rss_mb_per_replica`` (each replica's RSS once settled; every replica configures
  every tenant and runs its shards' share) and ``rss_kb_per_tenant`` (the mean replica
  RSS over the tenants configured);
- token fetches against the emulator, from its request log: in all, and the busiest
  second, all replicas together (``*_peak_fetches_per_s``) and per replica;
- a kill -9 of the replica running the most tenants: ``takeover_s``, from the kill to the
  last of its tenants' first listen on another replica, and the same fetch figures.

``takeover_rate`` is the relay's ``[sharding] takeover_rate`` (``None``: its default);
a very high one (100000) shows the storm without pacing. The lease heartbeat is the
production default (5 s), so a kill -9 moves shards after the presence timeout (3 s).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import requests

from bench import procs
from bench.ha import (
    DEPLOYMENT_SECRET,
    SHARDS,
    Replica,
    _config,
    _get,
    _settled,
    _world,
    listening,
)
from bench.procs import BenchError, Emulator, Tenant
from relay.core.shards import shard_of

# The production default, not the ha scenario's 2 s: at 2 s, on this shared machine, each
# replica's loop (starting some 300 listeners per shard it takes) missed its presence
# confirm while taking several shards in one tick, and dropped every lease every 3.5 s.
HEARTBEAT = 5


def _wait(what: str, condition: Callable[[], bool], timeout: float) -> None:
    """Poll every 5 s: listing 5,000 listens stalls the emulator's loop for a moment, and
    requests that arrive meanwhile are then logged together (the times come from its log,
    so polling more often buys no precision)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(5.0)


def busiest_window(moments: Iterable[float], seconds: float = 1.0) -> int:
    """The most moments within any window of ``seconds``."""
    times = sorted(moments)
    most = j = 0
    for i, start in enumerate(times):
        j = max(j, i)
        while j < len(times) and times[j] < start + seconds:
            j += 1
        most = max(most, j - i)
    return most


def fetch_figures(emulator: Emulator, since: float, prefix: str) -> dict[str, Any]:
    fetches = _get(emulator, "tokens", since=since)["fetches"]
    by_replica: dict[str, list[float]] = {}
    for fetch in fetches:
        by_replica.setdefault(fetch["replica"], []).append(fetch["at"])
    # The busiest second as the emulator logged it, and the busiest 5 s over 5: requests
    # that queued while the emulator was busy are logged together, which inflates the
    # first (the relay did not send them together); the second smooths that out.
    return {
        f"{prefix}_token_fetches": len(fetches),
        f"{prefix}_peak_fetches_per_s": busiest_window(f["at"] for f in fetches),
        f"{prefix}_peak_per_replica": {r: busiest_window(t) for r, t in sorted(by_replica.items())},
        f"{prefix}_peak_per_replica_5s": {
            r: round(busiest_window(t, 5.0) / 5, 1) for r, t in sorted(by_replica.items())
        },
        f"{prefix}_peak_per_replica_10s": {
            r: round(busiest_window(t, 10.0) / 10, 1) for r, t in sorted(by_replica.items())
        },
    }


class StallProbe(threading.Thread):
    """Asks the emulator a tiny question every 0.2 s and keeps how late it answered
    (its own clock at the answer minus the moment the question left): how long a request
    could wait behind the emulator's own work, and so be logged late and bunched."""

    def __init__(self, emulator: Emulator, admin: str) -> None:
        super().__init__(daemon=True)
        self.emulator, self.admin = emulator, admin
        self.halt = threading.Event()
        self.samples: list[tuple[float, float]] = []  # (sent, seconds late)

    def run(self) -> None:
        while not self.halt.wait(0.2):
            sent = time.monotonic()
            try:
                answer = _get(self.emulator, "listens/overlaps", company=self.admin, since=sent)
            except (requests.RequestException, BenchError, ValueError):
                continue  # a probe: a question that failed is no figure
            self.samples.append((sent, float(answer["now"]) - sent))

    def worst(self, start: float, end: float) -> float:
        return round(max((late for at, late in self.samples if start <= at < end), default=0.0), 2)


def first_listens(
    emulator: Emulator, since: float, *, admins: set[str], besides: str = ""
) -> dict[str, float]:
    """Per tenant admin: the start of its first listen after ``since`` by a replica other
    than ``besides``."""
    first: dict[str, float] = {}
    for listen in _get(emulator, "listens", since=since)["listens"]:
        company, start = listen["company"], listen["start"]
        if company in admins and start >= since and listen["replica"] != besides:
            first[company] = min(start, first.get(company, start))
    return first


def run(
    *, tenants: int, replicas: int = 3, takeover_rate: float | None, hold: float
) -> dict[str, Any]:
    with _world(tenants, hold) as (workdir, emulator, ts, name):
        extra = {} if takeover_rate is None else {"takeover_rate": takeover_rate}
        group = []
        for n in range(1, replicas + 1):
            port = procs.free_port()
            config = _config(
                workdir / f"r{n}.toml", emulator, ts, hold=hold, exchange=name, port=port,
                replica_id=f"r{n}", prefix=name, heartbeat=HEARTBEAT, shards=SHARDS,
                secret=DEPLOYMENT_SECRET, **extra,
            )  # fmt: skip
            group.append(Replica(f"r{n}", workdir, config, port))
        admins = {t.admin for t in ts}
        probe = StallProbe(emulator, ts[0].admin)
        probe.start()
        try:
            started = time.monotonic()
            for replica in group:
                replica.start()
            limit = 600 + tenants  # generous: pacing alone is tenants / (replicas x rate)
            _wait("every tenant to listen", lambda: len(listening(emulator)) >= tenants, limit)
            first = first_listens(emulator, started, admins=admins)
            cold = max(first.values()) - started
            _wait("the shards to settle", lambda: _settled(group, emulator, ts), limit)
            rss = {r.name: procs.rss_kb(r.proc.pid) for r in group if r.proc is not None}
            figures: dict[str, Any] = {
                "tenants": tenants,
                "replicas": replicas,
                "takeover_rate": "default" if takeover_rate is None else takeover_rate,
                "cold_start_s": round(cold, 1),
                **fetch_figures(emulator, started, "cold"),
                "cold_emulator_worst_lag_s": probe.worst(started, started + cold),
                "rss_mb_per_replica": {n: round(kb / 1024) for n, kb in rss.items()},
                "rss_kb_per_tenant": round(sum(rss.values()) / len(rss) / tenants, 1),
            }
            victim, moved = _biggest(group, ts)
            killed_at = time.monotonic()
            assert victim.proc is not None
            victim.signal(signal.SIGKILL)
            moved_admins = {t.admin for t in moved}
            _wait(
                "the victim's tenants to listen elsewhere",
                lambda: (
                    len(
                        first_listens(emulator, killed_at, admins=moved_admins, besides=victim.name)
                    )
                    >= len(moved)
                ),
                limit,
            )
            taken = first_listens(emulator, killed_at, admins=moved_admins, besides=victim.name)
            figures |= {
                "moved_tenants": len(moved),
                "takeover_s": round(max(taken.values()) - killed_at, 1),
                **fetch_figures(emulator, killed_at, "takeover"),
                "takeover_emulator_worst_lag_s": probe.worst(killed_at, time.monotonic()),
                # Every lease given up at once (the lease connection lost or gone stale):
                # each costs a replica every token again.
                "leases_lost": {r.name: _lost(r) for r in group},
            }
        finally:
            probe.halt.set()
            for replica in group:
                if replica.proc is not None:
                    replica.proc.stop()
    return figures


def _biggest(group: list[Replica], ts: list[Tenant]) -> tuple[Replica, list[Tenant]]:
    """The replica running the most tenants, and those tenants."""
    owned = {r.name: r.owned() or set() for r in group}
    runs = {n: [t for t in ts if shard_of(t.name, SHARDS) in shards] for n, shards in owned.items()}
    victim = max(group, key=lambda r: len(runs[r.name]))
    return victim, runs[victim.name]


def _lost(replica: Replica) -> int:
    """How often ``replica`` lost every lease at once, from its log (all its starts)."""
    logs = replica.workdir.glob(f"{replica.name}-*.log")
    return sum(log.read_text(errors="replace").count('"message": "leases lost"') for log in logs)
