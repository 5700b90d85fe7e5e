"""``python -m bench.api2_directory [--members 10000] [--changes 100] [--polls 3]``.

The cost of one directory poll of an ``api = "api2"`` tenant (relay.runtime.directory2):
the emulator (a process of its own, seeded with one company of ``--members`` members in
20 departments) answers ``department/list`` and ``user/list``; this process runs the
relay's poller against it with a real journal. Printed, per kind of poll (the baseline,
an unchanged one, one with ``--changes`` members changed): wall time, this process's CPU
time, requests, the ``user/list`` answer's bytes, the journal's growth, and the Python
heap's peak during the poll (tracemalloc, measured on a separate unchanged poll, since
tracing slows it). Figures and the command are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import aiohttp

from bench.procs import PYTHON, free_port, start
from relay.exmail2 import App, Exmail2Client
from relay.journal import Journal
from relay.runtime.directory2 import DirectoryPoller, PollState

CORPID = "wwbench0000000001"
SECRET = "bench-directory-secret"  # noqa: S105 - the emulator's, not a real one
DOMAIN = "bench.test"


def seed(members: int) -> dict[str, Any]:
    departments = [f"Division {d // 5}/Team {d}" for d in range(20)]
    users = [
        {
            "userid": f"user{i:05d}@{DOMAIN}",
            "name": f"Member {i}",
            "departments": [departments[i % 20]],
            "position": "Engineer",
            "mobile": f"138{i:08d}",
            "tel": "020-12345678",
            "extid": f"E{i}",
            "gender": 1 + i % 2,
            "slaves": [f"alias{i:05d}@{DOMAIN}"] if i % 10 == 0 else [],
        }
        for i in range(members)
    ]
    return {
        "companies": [],
        "api2": [
            {
                "corpid": CORPID,
                "secrets": {"directory": SECRET},
                "domains": [DOMAIN],
                "departments": departments,
                "users": users,
            }
        ],
    }


def journal_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


async def wait_up(url: str) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            try:
                async with http.get(f"{url}/_emulator/api2/state") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("the emulator did not start")


async def listing_bytes(base: str) -> int:
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{base}gettoken", params={"corpid": CORPID, "corpsecret": SECRET}
        ) as r:
            token = (await r.json())["access_token"]
        query = {"access_token": token, "department_id": "1", "fetch_child": "1"}
        async with http.get(f"{base}user/list", params=query) as r:
            return len(await r.read())


async def run(members: int, changes: int, polls: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-api2dir-"))
    (work / "seed.json").write_text(json.dumps(seed(members)))
    port = free_port()
    argv = [
        PYTHON,
        "-m",
        "relay",
        "emulator",
        "--port",
        str(port),
        "--data",
        str(work / "seed.json"),
    ]
    emulator = start("emulator", argv, work)
    url = f"http://127.0.0.1:{port}"
    requests: list[str] = []
    results: dict[str, Any] = {"members": members}
    try:
        await wait_up(url)
        base = f"{url}/cgi-bin/"
        results["user_list_bytes"] = await listing_bytes(base)
        path = work / "journal.sqlite3"
        async with (
            Journal(path) as journal,
            Exmail2Client(
                corpid=CORPID,
                secrets={App.DIRECTORY: SECRET},
                base_url=base,
                timeout=60,
                max_response_bytes=256 * 1024 * 1024,
                on_request=lambda op, _s, _o: requests.append(op),
            ) as client,
        ):
            state = PollState("bench", 300.0)
            poller = DirectoryPoller(
                tenant="bench", client=client, journal=journal, route=lambda e: ("s",),
                state=state,
            )  # fmt: skip

            async def measure(kind: str) -> dict[str, Any]:
                before_bytes, before_cpu = journal_bytes(path), time.process_time()
                requests.clear()
                started = time.perf_counter()
                outcome = await poller.poll()
                return {
                    "kind": kind,
                    "outcome": outcome,
                    "wall_s": round(time.perf_counter() - started, 3),
                    "cpu_s": round(time.process_time() - before_cpu, 3),
                    "requests": len(requests),
                    "operations": sorted(set(requests)),
                    "journal_growth_bytes": journal_bytes(path) - before_bytes,
                    "events": sum(state.last_changes.values()) if kind == "changes" else None,
                }

            runs = [await measure("baseline")]
            runs += [await measure("unchanged") for _ in range(polls)]
            async with aiohttp.ClientSession() as http:
                for i in range(changes):
                    body = {"action": "mod", "userid": f"user{i * 7 % members:05d}@{DOMAIN}",
                            "position": "Lead"}  # fmt: skip
                    async with http.post(f"{url}/_emulator/api2/user", json=body) as resp:
                        assert resp.status == 200, await resp.text()
            runs.append(await measure("changes"))
            tracemalloc.start()
            await poller.poll()
            results["heap_peak_mb"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
            tracemalloc.stop()
            results["runs"] = runs
            results["journal_bytes"] = journal_bytes(path)
            results["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    finally:
        emulator.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--polls", type=int, default=3)
    args = parser.parse_args()
    results = asyncio.run(run(args.members, args.changes, args.polls))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
