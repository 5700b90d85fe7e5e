"""``python -m bench [--smoke | --full] [--scenario NAME ...] [--out FILE]``.

Runs each scenario against the relay and its baselines, prints one table per scenario
with absolute figures and ratios, and appends one JSON line per run plus one summary
line per scenario to ``--out``. Exits 1 if any run failed or lost an event.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import procs, scenarios
from bench.procs import BenchError

# The figure each scenario's ratios are taken on, and whether higher is better.
HEADLINE: dict[str, list[tuple[str, bool]]] = {
    "burst": [("events_per_s", True), ("cpu_us_per_event", False)],
    "latency": [("p99_ms", False), ("cpu_us_per_event", False)],
    "idle": [
        ("rss_kb_per_tenant", False),
        ("idle_cpu_ms_per_s", False),
        ("idle_cpu_us_per_renewal", False),
    ],
    "webhook": [],
    "gateway": [("calls_per_s", True), ("p99_ms", False), ("mail_p99_ms", False)],
    "ha": [],
    "scale": [],
    "callbacks": [],
    "wan": [
        ("one_events_per_s", True),
        ("one_cpu_us_per_event", False),
        ("many_events_per_s", True),
        ("many_cpu_us_per_event", False),
    ],
}


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def rabbitmq_version() -> str:
    try:
        out = subprocess.run(
            ["rabbitmqctl", "version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    lines = out.stdout.strip().splitlines()
    return lines[-1] if lines else "unknown"


def table(name: str, runs: dict[str, dict[str, Any]]) -> str:
    keys: list[str] = []
    for row in runs.values():
        keys += [k for k in row if k not in keys]
    width = max(len(k) for k in keys) if keys else 10
    targets = list(runs)
    lines = [f"== {name} ==", f"{'':{width}}  " + "  ".join(f"{t:>12}" for t in targets)]
    for key in keys:
        cells = [str(runs[t].get(key, "")) for t in targets]
        lines.append(f"{key:{width}}  " + "  ".join(f"{c:>12}" for c in cells))
    return "\n".join(lines)


def ratios(name: str, runs: dict[str, dict[str, Any]]) -> dict[str, float]:
    out: dict[str, float] = {}
    relay = runs.get("relay", {})
    for key, _higher in HEADLINE[name]:
        for base in ("durable-floor", "floor", "naive", "direct"):
            if key in relay and key in runs.get(base, {}) and runs[base][key]:
                out[f"{key} relay/{base}"] = round(relay[key] / runs[base][key], 3)
    static = runs.get("static", {})
    for key in ("takeover_p50_s", "takeover_max_s"):
        if name == "ha" and relay.get(key) is not None and static.get(key):
            out[f"{key} relay/static"] = round(relay[key] / static[key], 3)
    naive = runs.get("naive", {})
    for shape in ("one", "many") if name == "wan" else ():
        # What 4 x naive leaves the relay: the machine's cores at 4 x naive's rate, less
        # the harness's own CPU per event in the relay's run (emulator, consumer,
        # proxies, broker). Against it, the CPU per event of the cheapest target.
        rate = naive.get(f"{shape}_events_per_s")
        harness = relay.get(f"{shape}_harness_cpu_us_per_event")
        if rate and harness is not None:
            budget = round(len(os.sched_getaffinity(0)) * 1e6 / (4 * rate) - harness, 1)
            out[f"{shape} relay cpu budget for 4 x naive (us/event)"] = budget
            floor_cpu = runs.get("floor", {}).get(f"{shape}_cpu_us_per_event")
            if floor_cpu and budget > 0:
                out[f"{shape} floor cpu / that budget"] = round(floor_cpu / budget, 3)
    if name == "latency" and "p99_ms" in relay and "p99_ms" in runs.get("floor", {}):
        out["p99_ms relay-floor"] = round(relay["p99_ms"] - runs["floor"]["p99_ms"], 2)
    return out


def verdicts(name: str, runs: dict[str, dict[str, Any]], sizes_label: str) -> dict[str, bool]:
    """The issue's targets, where this scenario's figures allow a verdict."""
    relay, floor, naive = runs.get("relay", {}), runs.get("floor", {}), runs.get("naive", {})
    out: dict[str, bool] = {}
    if sizes_label == "smoke":  # a handful of events: CPU is below the clock tick
        return out
    if name == "burst" and "events_per_s" in relay:
        if "events_per_s" in floor:
            out["target: events/s >= 0.7 x floor"] = (
                relay["events_per_s"] >= 0.7 * floor["events_per_s"]
            )
            out["target: cpu/event <= 1.5 x floor"] = (
                relay["cpu_us_per_event"] <= 1.5 * floor["cpu_us_per_event"]
            )
        if "events_per_s" in naive:
            out["target: events/s >= 5 x naive"] = (
                relay["events_per_s"] >= 5 * naive["events_per_s"]
            )
    if name == "burst" and "cpu_us_per_event" in relay:
        # Issue 20's four goals, each a ratio within this one invocation.
        cpu = relay["cpu_us_per_event"]
        for label, limit in (("durable-floor", 1.15), ("floor", 1.25), ("naive", 0.8)):
            base = runs.get(label, {}).get("cpu_us_per_event")
            if base:
                out[f"issue 20: cpu/event <= {limit} x {label}"] = cpu <= limit * base
        if floor.get("events_per_s"):
            out["issue 20: events/s >= 1.0 x floor"] = (
                relay["events_per_s"] >= floor["events_per_s"]
            )
    if name == "wan":
        # Issue 20 item 3: per shape, relay events/s >= 4 x naive and >= 0.9 x floor.
        for shape in ("one", "many"):
            key = f"{shape}_events_per_s"
            for label, base, limit in (("naive", naive, 4.0), ("floor", floor, 0.9)):
                if relay.get(key) and base.get(key):
                    out[f"issue 20: {shape} events/s >= {limit} x {label}"] = (
                        relay[key] >= limit * base[key]
                    )
    if name == "latency" and "p99_ms" in relay and "p99_ms" in floor:
        out["target: p99 <= floor p99 + 10 ms"] = relay["p99_ms"] <= floor["p99_ms"] + 10
    if name == "gateway" and "token_fetches" in relay:
        out["target: one token fetch (the listener kept its token)"] = relay["token_fetches"] == 1
    if name == "callbacks" and "answered_200" in relay:
        out["issue 21: none lost (every callback answered 200 delivered once)"] = (
            relay["missing"] == 0 and relay["duplicates"] == 0 and relay["wrong_ids"] == 0
        )
        out["issue 21: rate sustained (all answered 200, >= 0.95 x offered/s)"] = (
            relay["failed"] == 0 and relay["answered_200_per_s"] >= 0.95 * relay["offered_rate"]
        )
    if name == "idle" and "rss_kb_per_tenant" in relay:
        out["target: <= 60 KB RSS per tenant"] = relay["rss_kb_per_tenant"] <= 60
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--smoke", action="store_true", help="tiny run: completion and no loss")
    size.add_argument("--full", action="store_true", help="larger sizes (10000 idle tenants)")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=list(scenarios.SCENARIOS),
        help="run only this scenario (repeatable; default: all)",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/results.jsonl"))
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="run every target under cProfile, stats to DIR (figures then are not comparable)",
    )
    parser.add_argument("--note", default="", help="free text stored with every result line")
    parser.add_argument(
        "--tenants", type=_positive, help="burst, latency, scale: tenants (overrides the size)"
    )
    parser.add_argument(
        "--takeover-rate",
        type=float,
        help="scale: the replicas' [sharding] takeover_rate (default: the relay's default)",
    )
    parser.add_argument("--mails", type=_positive, help="burst: mails per tenant (overrides)")
    parser.add_argument(
        "--rate", type=_positive, help="latency: events/s, callbacks: callbacks/s offered"
    )
    parser.add_argument(
        "--seconds", type=_positive, help="latency and callbacks: seconds of offered load"
    )
    args = parser.parse_args(argv)
    sizes = scenarios.SMOKE if args.smoke else scenarios.FULL if args.full else scenarios.DEFAULT
    if args.tenants is not None:
        sizes = dataclasses.replace(
            sizes,
            label=f"{sizes.label}, tenants={args.tenants}",
            tenants=args.tenants,
            latency_tenants=args.tenants,
            scale_tenants=args.tenants,
        )
    if args.takeover_rate is not None:
        sizes = dataclasses.replace(
            sizes,
            label=f"{sizes.label}, takeover_rate={args.takeover_rate:g}",
            takeover_rate=args.takeover_rate,
        )
    if args.rate is not None:
        sizes = dataclasses.replace(
            sizes, label=f"{sizes.label}, rate={args.rate}", rate=args.rate, cb_rate=args.rate
        )
    if args.seconds is not None:
        sizes = dataclasses.replace(
            sizes,
            label=f"{sizes.label}, seconds={args.seconds}",
            duration=args.seconds,
            cb_seconds=args.seconds,
        )
    if args.mails is not None:
        sizes = dataclasses.replace(
            sizes, label=f"{sizes.label}, mails={args.mails}", mails=args.mails
        )
    chosen = args.scenario or list(scenarios.SCENARIOS)
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
        procs.PROFILE_DIR = args.profile.resolve()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "sizes": sizes.label,
        "python": platform.python_version(),
        "nproc": os.cpu_count(),
        "rabbitmq": rabbitmq_version(),
        "note": args.note,
        "profiled": args.profile is not None,
    }
    print(f"exmail-relay benchmarks ({sizes.label}): {json.dumps(meta)}")
    failed = False
    with args.out.open("a") as out:
        for name in chosen:
            func, targets = scenarios.SCENARIOS[name]
            runs: dict[str, dict[str, Any]] = {}
            for target in targets:
                print(f"-- {name}: {target} ...", flush=True)
                started = time.monotonic()
                try:
                    row = func(target, sizes)
                except BenchError as exc:
                    failed = True
                    row = {"status": "failed", "error": str(exc)[:2000]}
                    print(f"   FAILED: {exc}", file=sys.stderr)
                row.setdefault("status", "ok")
                if row["status"] == "failed" and "error" in row:  # figures kept, run failed
                    failed = True
                    print(f"   FAILED: {row['error']}", file=sys.stderr)
                row["wall_s"] = round(time.monotonic() - started, 1)
                runs[target] = row
                out.write(json.dumps({**meta, "scenario": name, "target": target, **row}) + "\n")
                out.flush()
                if row["status"] == "unavailable":
                    print(f"   NOT RUN: {row['reason']}")
            print(table(name, runs))
            summary = ratios(name, runs)
            for key, value in summary.items():
                print(f"   {key}: {value}")
            checks = verdicts(name, runs, sizes.label)
            for key, ok in checks.items():
                print(f"   {key}: {'met' if ok else 'NOT met'}")
            lost = sum(int(r.get("lost", 0)) for r in runs.values())
            status = (
                "failed"
                if any(r["status"] == "failed" for r in runs.values())
                else (
                    "unavailable"
                    if all(r["status"] == "unavailable" for r in runs.values())
                    else "ok"
                )
            )
            line = {**meta, "scenario": name, "target": "summary", "status": status, "lost": lost}
            out.write(json.dumps({**line, **summary, **checks}) + "\n")
            print()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
