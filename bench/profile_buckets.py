"""Where a profiled relay's time went: ``python -m bench.profile_buckets FILE.pstats``.

Reads the ``.pstats`` that ``python -m bench --profile DIR`` leaves for each relay run
and sums every function's own time (cProfile's ``tottime``) into buckets by the module
it lives in: the event loop, JSON, the journal, aio-pika/AMQP, HTTP, observer/metrics,
the relay's other code, the rest. Waiting in ``epoll`` is idle time, not work, and is
reported apart. Then the top functions by own time and by cumulative time.

cProfile profiles the main thread only, so the journal's SQLite work on its own
threads shows here only as the hops to them; ``python -m bench.threads`` gives the CPU
of each thread. The emulator, broker and consumer are other processes: not in here.
"""

from __future__ import annotations

import argparse
import pstats
from collections import defaultdict
from typing import Any

# First match wins: (bucket, substrings of the file name or of a built-in's name).
# A built-in other than the epoll wait (a socket send, a queue put) is charged to the
# buckets of its callers, in proportion to the time each caller spent in it: the
# ``put`` that hands a write to the journal thread is the journal's cost.
BUCKETS: list[tuple[str, tuple[str, ...]]] = [
    ("idle (epoll wait)", ("'poll' of 'select.epoll'",)),
    # Its own bucket: the transport's callers are asyncio's, one level up from who wrote.
    ("socket send/recv syscalls", ("'_socket.socket'",)),
    ("start-up (imports)", ("<frozen importlib", "builtins.compile", "builtins.exec")),
    ("JSON", ("/json/", "_json", "orjson", "relay/exmail/_json.py", "relay/exmail/_decode")),
    ("journal/SQLite", ("relay/journal/", "sqlite3", "concurrent/futures", "threading.py")),
    ("aio-pika/AMQP", ("aio_pika/", "aiormq/", "pamqp/", "relay/sinks/", "relay/core/amqp")),
    ("observer/metrics", ("prometheus_client/", "relay/runtime/observer.py", "relay/ops/")),
    ("HTTP (aiohttp, Exmail client)", ("aiohttp/", "yarl/", "multidict/", "relay/exmail/")),
    ("event loop", ("asyncio/", "selectors.py", "socket.py", "_asyncio", "_contextvars")),
    ("relay, other", ("relay/",)),
]
OTHER = "other (stdlib, built-ins)"


Func = tuple[str, int, str]


def bucket(func: Func) -> str:
    filename, _, name = func
    where = filename if filename != "~" else name
    for label, needles in BUCKETS:
        if any(needle in where for needle in needles):
            return label
    return OTHER


def charge(func: Func, tottime: float, callers: dict[Func, Any]) -> dict[str, float]:
    """The buckets ``func``'s own time goes to: its own, or its callers' if a built-in."""
    own = bucket(func)
    if func[0] != "~" or own != OTHER or not callers:
        return {own: tottime}
    shares: dict[str, float] = defaultdict(float)
    for caller, (_, _, caller_tt, _) in callers.items():
        shares[bucket(caller)] += caller_tt
    total = sum(shares.values()) or 1.0
    return {name: tottime * share / total for name, share in shares.items()}


def label(func: Func) -> str:
    filename, line, name = func
    if filename == "~":
        return name
    parts = filename.split("/site-packages/")[-1].split("/python3.11/")[-1].split("/wt-perf/")
    return f"{parts[-1]}:{line}({name})"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_buckets")
    parser.add_argument("pstats")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    stats = pstats.Stats(args.pstats)
    table = stats.stats  # type: ignore[attr-defined]  # {func: (cc, nc, tt, ct, callers)}
    own: dict[str, float] = defaultdict(float)
    for func, (_, _, tottime, _, callers) in table.items():
        for name, seconds in charge(func, tottime, callers).items():
            own[name] += seconds
    idle = own.pop("idle (epoll wait)", 0.0)
    busy = sum(own.values())
    print(f"own time in the main thread: {busy:.2f} s busy, {idle:.2f} s idle (epoll wait)")
    for name, seconds in sorted(own.items(), key=lambda kv: -kv[1]):
        print(f"  {name:32} {seconds:7.2f} s  {seconds / busy:6.1%}")
    for key, title in ((2, "own"), (3, "cumulative")):
        print(f"\ntop {args.top} by {title} time (calls, own s, cumulative s):")
        ranked = sorted(table.items(), key=lambda kv: -kv[1][key])
        shown = 0
        for func, (_, ncalls, tottime, cumtime, _) in ranked:
            if bucket(func).startswith("idle"):
                continue
            print(f"  {ncalls:8} {tottime:7.2f} {cumtime:7.2f}  {label(func)}")
            shown += 1
            if shown >= args.top:
                break


if __name__ == "__main__":
    main()
