"""The workloads (``callbacks``: bench/callbacks.py, ``gateway``: bench/gateway.py).
Each run gets fresh processes: its own emulator (so exactly one
consumer ever holds a tenant's token), its own exchange and queue (deleted afterwards),
its own consumer, and one target: ``relay``, ``durable-floor``, ``floor`` or ``naive``.

A run returns one flat dict (a JSON line of the results file). A lost event is not a
figure but a failure: :class:`~bench.procs.BenchError`.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from bench import callbacks, gateway, procs, scale
from bench import ha as bench_ha
from bench.procs import BenchError, Emulator, Proc, Tenant

INJECT_CHUNK = 1000


@dataclass(frozen=True)
class Sizes:
    label: str
    tenants: int = 20  # burst
    mails: int = 500  # burst, per tenant
    rate: float = 200.0  # latency, events/s across tenants
    duration: float = 30.0  # latency, seconds
    latency_tenants: int = 20
    idle_tenants: int = 2000
    # Seconds of CPU sampling at idle: one whole hold period, so every held listen is
    # answered empty and renewed exactly once inside the window (a shorter window may
    # or may not catch the renewal wave, which made the figure swing 1 to 146 ms/s).
    idle_window: float = 30.0
    hook_tenants: int = 5
    hook_mails: int = 100  # per tenant
    hold: float = 5.0
    idle_hold: float = 30.0
    gw_concurrency: int = 200  # gateway: concurrent calls
    gw_duration: float = 30.0  # gateway: seconds of load
    gw_mail_rate: float = 20.0  # gateway: mails/s flowing meanwhile
    ha_tenants: int = 12  # ha: tenants over 3 replicas
    ha_kills: int = 10  # ha: kill -9 of the biggest owner (and of the static baseline)
    ha_handoffs: int = 5  # ha: SIGTERM of the biggest owner
    scale_tenants: int = 5000  # scale: tenants over scale_replicas lease replicas
    scale_replicas: int = 3
    scale_hold: float = 30.0  # scale: the emulator's listen hold
    takeover_rate: float | None = None  # scale: [sharding] takeover_rate (None: default)
    cb_rate: float = 500.0  # callbacks: callbacks/s offered to one relay (issue 21)
    cb_seconds: float = 20.0  # callbacks: seconds of load
    cb_in_flight: int = 500  # callbacks: the generator's bound on unanswered callbacks
    wan_one_mails: int = 3000  # wan: one busy tenant's mails
    wan_tenants: int = 20  # wan: the many-tenant shape
    wan_mails: int = 250  # wan: mails per tenant of the many-tenant shape
    wan_rounds: int = 3  # wan: runs per shape and target; the fastest is reported


SMOKE = Sizes(
    "smoke", tenants=2, mails=10, rate=20, duration=2, latency_tenants=2, idle_tenants=10,
    idle_window=5, hook_tenants=2, hook_mails=5, hold=2, idle_hold=5,
    gw_concurrency=5, gw_duration=1, gw_mail_rate=5,
    ha_tenants=6, ha_kills=1, ha_handoffs=1, cb_rate=20, cb_seconds=2, wan_one_mails=10,
    wan_tenants=2, wan_mails=5, wan_rounds=1, scale_tenants=60,
)  # fmt: skip
DEFAULT = Sizes("default")
FULL = Sizes(
    "full", tenants=50, mails=1000, rate=500, duration=60, latency_tenants=50,
    idle_tenants=10000, idle_window=30, hook_tenants=20, hook_mails=200,
    ha_tenants=48, ha_kills=10, ha_handoffs=10,
)  # fmt: skip


def subject(seq: int) -> str:
    return f"bench|{seq}|{time.time():.6f}"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def inject(emulator: Emulator, mails: list[dict[str, str]]) -> None:
    for start in range(0, len(mails), INJECT_CHUNK):
        emulator.post("mail", {"mails": mails[start : start + INJECT_CHUNK]})


@dataclass
class Harness:
    """The processes of one run, stopped and cleaned up on exit."""

    target: str
    workdir: Path
    tenants: list[Tenant]
    emulator: Emulator
    consumer: Proc | None
    proc: Proc
    started: float
    # The harness's own processes (emulator, consumer, delay proxies, the local broker):
    # their CPU is what is left of the machine for the target, whatever it is.
    others: tuple[int, ...] = ()
    broker_counted: bool = False

    def sample_cpu_until_consumer_exits(self, timeout: float) -> list[tuple[float, float, float]]:
        """(wall time, target CPU seconds, the harness's CPU seconds) every 50 ms while
        the consumer runs."""
        assert self.consumer is not None
        samples = []
        last: dict[int, float] = {}
        deadline = time.monotonic() + timeout
        while self.consumer.popen.poll() is None and time.monotonic() < deadline:
            others = procs.cpu_seconds_of(self.others, last)
            samples.append((time.time(), procs.cpu_seconds(self.proc.pid), others))
            time.sleep(0.05)
        others = procs.cpu_seconds_of(self.others, last)
        samples.append((time.time(), procs.cpu_seconds(self.proc.pid), others))
        return samples

    def received(self, expect: int, timeout: float) -> dict[str, Any]:
        assert self.consumer is not None
        result = procs.consumer_result(self.consumer, self.workdir, timeout)
        self.proc.check()
        lost = expect - int(result["received"])
        result["lost"] = lost
        if lost:
            raise BenchError(
                f"{self.target}: {lost} of {expect} events lost (logs in {self.workdir})"
            )
        return result


@contextlib.contextmanager
def harness(
    target: str,
    n_tenants: int,
    *,
    hold: float,
    expect: int,
    consumer_timeout: float,
    listen_timeout: float = 120.0,
    webhooks: list[dict[str, Any]] | None = None,
    wan: tuple[float, float] | None = None,
) -> Iterator[Harness]:
    """``wan``: one-way delays in ms (Exmail, broker) of the delay proxies the target
    reaches both through; the harness itself (injection, consumer) goes direct."""
    run_id = secrets.token_hex(4)
    workdir = procs.workdir()
    tenants = procs.make_tenants(n_tenants, run_id)
    exchange, queue = procs.names(run_id)
    started: list[Proc] = []
    ok = False
    try:
        emulator = procs.start_emulator(workdir, tenants, hold)
        started.append(emulator.proc)
        route = None
        if wan is not None:
            route = procs.start_wan(workdir, emulator, *wan)
            started += route.proxies
        consumer = None
        if webhooks is None:
            consumer = procs.start_consumer(workdir, exchange, queue, expect, consumer_timeout)
            started.append(consumer)
        began = time.monotonic()
        proc = procs.start_target(
            target,
            workdir,
            emulator,
            tenants,
            hold=hold,
            exchange=None if webhooks is not None else exchange,
            webhooks=webhooks or [],
            route=route,
        )
        started.append(proc)
        emulator.wait_listens(n_tenants, listen_timeout, proc)
        broker = procs.local_broker_pid()
        others = tuple(p.pid for p in started if p is not proc)
        if broker is not None:
            others += (broker,)
        yield Harness(
            target, workdir, tenants, emulator, consumer, proc, began, others, broker is not None
        )
        ok = True
    finally:
        for p in reversed(started):
            p.stop()
        if webhooks is None:
            with contextlib.suppress(Exception):
                procs.delete_amqp(exchange, queue)
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"  (logs of the failed run kept in {workdir})")


def cpu_at(samples: list[tuple[float, float, float]], when: float, index: int = 1) -> float:
    """CPU seconds at the first sample at or after ``when``: the target's (``index``
    1) or the harness's (2)."""
    for sample in samples:
        if sample[0] >= when:
            return sample[index]
    return samples[-1][index]


def burst(target: str, sizes: Sizes) -> dict[str, Any]:
    """T tenants x N mails injected at once; events/s from first injection to last receipt."""
    return measure_burst(target, sizes.tenants, sizes.mails, hold=sizes.hold)


def measure_burst(
    target: str, n: int, per_tenant: int, *, hold: float, wan: tuple[float, float] | None = None
) -> dict[str, Any]:
    expect = n * per_tenant
    with harness(target, n, hold=hold, expect=expect, consumer_timeout=300, wan=wan) as h:
        mails = [{"to": h.tenants[i % n].user(), "subject": subject(i)} for i in range(expect)]
        rss_before = procs.rss_kb(h.proc.pid)
        cpu0 = procs.cpu_seconds(h.proc.pid)
        others0 = procs.cpu_seconds_of(h.others, {})
        waited0 = procs.runqueue_wait_s(h.proc.pid)
        t0 = time.time()
        inject(h.emulator, mails)
        samples = h.sample_cpu_until_consumer_exits(330)
        waited = procs.runqueue_wait_s(h.proc.pid) - waited0
        rss_after = procs.rss_kb(h.proc.pid)
        result = h.received(expect, 30)
    last = max(r for _, _, r in result["records"])
    seconds = last - t0
    cpu = cpu_at(samples, last) - cpu0
    others = cpu_at(samples, last, 2) - others0
    return {
        "events": expect,
        "tenants": n,
        "received": result["received"],
        "lost": result["lost"],
        "duplicates": result["duplicates"],
        "seconds": round(seconds, 3),
        "events_per_s": round(expect / seconds, 1),
        "cpu_s": round(cpu, 3),
        "cpu_us_per_event": round(cpu / expect * 1e6, 1),
        # Runnable but not running (all its threads): the machine's load on this run.
        "runq_wait_s": round(waited, 3),
        # The harness's processes (emulator, consumer, proxies, broker when local) over
        # the same window, per event: what they leave of the machine for any target.
        "harness_cpu_us_per_event": round(others / expect * 1e6, 1),
        "broker_counted": h.broker_counted,
        "rss_kb_before": rss_before,
        "rss_kb_after": rss_after,
    }


def latency(target: str, sizes: Sizes) -> dict[str, Any]:
    """A fixed offered rate for a fixed time; added latency = receipt - emission."""
    expect = int(sizes.rate * sizes.duration)
    n = sizes.latency_tenants
    with harness(
        target, n, hold=sizes.hold, expect=expect, consumer_timeout=sizes.duration + 120
    ) as h:
        cpu0 = procs.cpu_seconds(h.proc.pid)
        start = time.monotonic()
        sent = 0
        while sent < expect:
            due = min(expect, int((time.monotonic() - start) * sizes.rate) + 1)
            if due > sent:
                h.emulator.post(
                    "mail",
                    {
                        "mails": [
                            {"to": h.tenants[i % n].user(), "subject": subject(i)}
                            for i in range(sent, due)
                        ]
                    },
                )
                sent = due
            time.sleep(0.005)
        offered_s = time.monotonic() - start
        samples = h.sample_cpu_until_consumer_exits(sizes.duration + 150)
        result = h.received(expect, 30)
    lat = [(r - e) * 1000 for _, e, r in result["records"]]
    last = max(r for _, _, r in result["records"])
    return {
        "events": expect,
        "tenants": n,
        "offered_rate": round(expect / offered_s, 1),
        "received": result["received"],
        "lost": result["lost"],
        "duplicates": result["duplicates"],
        "p50_ms": round(percentile(lat, 0.50), 2),
        "p95_ms": round(percentile(lat, 0.95), 2),
        "p99_ms": round(percentile(lat, 0.99), 2),
        "max_ms": round(max(lat), 2),
        "cpu_us_per_event": round((cpu_at(samples, last) - cpu0) / expect * 1e6, 1),
    }


def idle(target: str, sizes: Sizes) -> dict[str, Any]:
    """K tenants each holding a listen: memory, idle CPU, start-up, then one mail each."""
    k = sizes.idle_tenants
    with harness(
        target,
        k,
        hold=sizes.idle_hold,
        expect=k,
        consumer_timeout=600,
        listen_timeout=max(120.0, k / 10),
    ) as h:
        all_open = time.monotonic() - h.started
        settle(h.proc.pid)  # start-up work (bootstrap events) must not count as idle
        listens0 = h.emulator.listen_requests()
        cpu0, w0 = procs.cpu_seconds(h.proc.pid), time.monotonic()
        time.sleep(sizes.idle_window)
        cpu1, w1 = procs.cpu_seconds(h.proc.pid), time.monotonic()
        renewals = h.emulator.listen_requests() - listens0
        rss = procs.rss_kb(h.proc.pid)
        t0 = time.time()
        inject(
            h.emulator, [{"to": t.user(), "subject": subject(i)} for i, t in enumerate(h.tenants)]
        )
        h.sample_cpu_until_consumer_exits(630)
        result = h.received(k, 30)
    last = max(r for _, _, r in result["records"])
    slowest = max(r - e for _, e, r in result["records"])
    # Memory of the same program serving one tenant, so the per-tenant figure is marginal.
    with harness(target, 1, hold=sizes.idle_hold, expect=1, consumer_timeout=60) as one:
        time.sleep(1.0)
        rss_one = procs.rss_kb(one.proc.pid)
        inject(one.emulator, [{"to": one.tenants[0].user(), "subject": subject(0)}])
        one.received(1, 70)
    return {
        "tenants": k,
        "hold_s": sizes.idle_hold,
        "received": result["received"],
        "lost": result["lost"],
        "duplicates": result["duplicates"],
        "all_listens_open_s": round(all_open, 2),
        "rss_kb": rss,
        "rss_kb_one_tenant": rss_one,
        "rss_kb_per_tenant": round((rss - rss_one) / max(k - 1, 1), 1),
        "rss_kb_total_per_tenant": round(rss / k, 1),
        "idle_cpu_ms_per_s": round((cpu1 - cpu0) / (w1 - w0) * 1000, 2),
        # The same CPU per listen renewed in the window: steadier than per second, as
        # a window may catch one wave of renewals or, at its edges, parts of two.
        "idle_renewals": renewals,
        "idle_cpu_us_per_renewal": round((cpu1 - cpu0) / max(renewals, 1) * 1e6, 1),
        "deliver_all_s": round(last - t0, 3),
        "slowest_tenant_ms": round(slowest * 1000, 1),
    }


def settle(pid: int, *, quiet: float = 0.02, limit: float = 60.0) -> None:
    """Wait until ``pid`` used under ``quiet`` of a core over half a second (or ``limit``)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = procs.cpu_seconds(pid)
        time.sleep(0.5)
        if procs.cpu_seconds(pid) - before <= quiet * 0.5:
            return


def webhook_available() -> bool:
    return importlib.util.find_spec("relay.sinks.webhook") is not None


def webhook(target: str, sizes: Sizes) -> dict[str, Any]:
    """Fan-out to three local receivers, one of them slow (1 s per request)."""
    if not webhook_available():
        return {
            "status": "unavailable",
            "reason": "webhook sink not available (relay.sinks.webhook)",
        }
    expect = sizes.hook_tenants * sizes.hook_mails
    port = procs.free_port()
    base = f"http://127.0.0.1:{port}"
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    hooks = [
        {"name": name, "url": f"{base}/hook/{name}", "secret": secret, "retry_schedule": ["1s"] * 3}
        for name in ("fast1", "fast2", "slow")
    ]
    receiver_dir = procs.workdir()
    receiver = procs.start(
        "receiver",
        [procs.PYTHON, "-m", "bench.receiver", "--port", str(port)],
        receiver_dir,
        pipe=True,
    )
    try:
        receiver.wait_line("ready", 30)
        with harness(
            target,
            sizes.hook_tenants,
            hold=sizes.hold,
            expect=expect,
            consumer_timeout=0,
            webhooks=hooks,
        ) as h:
            mails = [
                {"to": h.tenants[i % sizes.hook_tenants].user(), "subject": subject(i)}
                for i in range(expect)
            ]
            t0 = time.time()
            inject(h.emulator, mails)
            stats = _wait_healthy(base, expect, timeout=120, target=h.proc)
    finally:
        receiver.stop()
        shutil.rmtree(receiver_dir, ignore_errors=True)
    out: dict[str, Any] = {"events": expect, "tenants": sizes.hook_tenants, "status": "ok"}
    lost = 0
    for name in ("fast1", "fast2"):
        records = stats[name]["records"]
        lost += expect - len(records)
        last = max((r for _, _, r in records), default=t0)
        lat = [(r - e) * 1000 for _, e, r in records]
        out[f"{name}_deliveries_per_s"] = round(len(records) / max(last - t0, 1e-9), 1)
        out[f"{name}_p99_ms"] = round(percentile(lat, 0.99), 2)
    out["slow_delivered"] = len(stats["slow"]["records"])
    out["duplicates"] = sum(stats[n]["duplicates"] for n in ("fast1", "fast2"))
    out["lost"] = lost
    if lost:
        raise BenchError(f"webhook: {lost} deliveries to the healthy endpoints missing")
    return out


def _wait_healthy(base: str, expect: int, *, timeout: float, target: Proc) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        stats: dict[str, Any] = requests.get(f"{base}/_stats", timeout=10).json()
        if all(len(stats[n]["records"]) >= expect for n in ("fast1", "fast2")):
            return stats
        if time.monotonic() > deadline:
            return stats
        target.check()
        time.sleep(0.2)


def ha(target: str, sizes: Sizes) -> dict[str, Any]:
    """Takeover and handoff gaps of 3 lease-mode replicas; a static restart as baseline."""
    if target == "relay":
        return bench_ha.lease(
            tenants=sizes.ha_tenants,
            kills=sizes.ha_kills,
            handoffs=sizes.ha_handoffs,
            hold=sizes.hold,
        )
    return bench_ha.static(tenants=sizes.ha_tenants, kills=sizes.ha_kills, hold=sizes.hold)


def scale_scenario(target: str, sizes: Sizes) -> dict[str, Any]:
    """Cold start, RSS and a kill -9 takeover of many tenants over lease replicas."""
    return scale.run(
        tenants=sizes.scale_tenants,
        replicas=sizes.scale_replicas,
        takeover_rate=sizes.takeover_rate,
        hold=sizes.scale_hold,
    )


# The wan scenario's one-way delays in ms: Exmail 30 ms round trip, the broker 2 ms.
WAN_EXMAIL_MS = 15.0
WAN_BROKER_MS = 1.0


def wan(target: str, sizes: Sizes) -> dict[str, Any]:
    """The burst through delay proxies (:mod:`bench.delay_proxy`): one busy tenant
    (``one_*``) and many tenants (``many_*``), each run in fresh processes,
    ``wan_rounds`` times in turn; the fastest run of each shape is reported (the
    machine's other work only ever slows a run down), the slowest beside it."""
    out: dict[str, Any] = {"exmail_rtt_ms": 2 * WAN_EXMAIL_MS, "broker_rtt_ms": 2 * WAN_BROKER_MS}
    shapes = (("one", 1, sizes.wan_one_mails), ("many", sizes.wan_tenants, sizes.wan_mails))
    best: dict[str, dict[str, Any]] = {}
    slowest: dict[str, float] = {}
    for _ in range(sizes.wan_rounds):
        for prefix, n, per_tenant in shapes:
            row = measure_burst(
                target, n, per_tenant, hold=sizes.hold, wan=(WAN_EXMAIL_MS, WAN_BROKER_MS)
            )
            out["lost"] = out.get("lost", 0) + row["lost"]
            out["duplicates"] = out.get("duplicates", 0) + row["duplicates"]
            if prefix not in best or row["events_per_s"] > best[prefix]["events_per_s"]:
                best[prefix] = row
            slowest[prefix] = min(slowest.get(prefix, row["events_per_s"]), row["events_per_s"])
    for prefix, row in best.items():
        for key in (
            "tenants",
            "events",
            "seconds",
            "events_per_s",
            "cpu_us_per_event",
            "harness_cpu_us_per_event",
        ):
            out[f"{prefix}_{key}"] = row[key]
        # What the machine could carry if the target cost nothing: all its cores, spent
        # only on the harness's own per-event CPU (an estimate from this rate; see
        # docs/benchmarks.md, "The harness's ceiling").
        harness = row["harness_cpu_us_per_event"]
        out[f"{prefix}_harness_ceiling_events_per_s"] = (
            round(len(os.sched_getaffinity(0)) * 1e6 / harness, 1) if harness > 0 else None
        )
        out["broker_counted"] = row["broker_counted"]
        out[f"{prefix}_runq_wait_s"] = row["runq_wait_s"]
        out[f"{prefix}_slowest_events_per_s"] = slowest[prefix]
    out["rounds"] = sizes.wan_rounds
    return out


SCENARIOS: dict[str, tuple[Callable[[str, Sizes], dict[str, Any]], tuple[str, ...]]] = {
    "burst": (burst, ("relay", "durable-floor", "floor", "naive")),
    "latency": (latency, ("relay", "floor")),
    "idle": (idle, ("relay", "floor")),
    "webhook": (webhook, ("relay",)),
    "gateway": (gateway.run, ("relay", "direct")),
    "ha": (ha, ("relay", "static")),
    "scale": (scale_scenario, ("relay",)),
    "callbacks": (callbacks.run, ("relay",)),
    "wan": (wan, ("relay", "durable-floor", "floor", "naive")),
}
