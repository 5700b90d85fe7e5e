"""Webhook receivers for the fan-out scenario: ``python -m bench.receiver --port N``.

``POST /hook/<name>`` answers 204 and records when each delivery arrived; ``slow``
sleeps a second first. ``GET /_stats`` returns what each endpoint got, keyed by the
sequence number in the event's subject (``bench|<seq>|<emitted>``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from aiohttp import web

SLOW_SECONDS = 1.0


def build() -> web.Application:
    seen: dict[str, dict[int, tuple[float, float]]] = {}
    duplicates: dict[str, int] = {}

    async def hook(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name == "slow":
            await asyncio.sleep(SLOW_SECONDS)
        body = await request.read()
        received = time.time()
        _, seq, emitted = json.loads(body)["data"]["subject"].split("|")
        got = seen.setdefault(name, {})
        if int(seq) in got:
            duplicates[name] = duplicates.get(name, 0) + 1
        else:
            got[int(seq)] = (float(emitted), received)
        return web.Response(status=204)

    async def stats(request: web.Request) -> web.Response:
        out: dict[str, Any] = {
            name: {
                "records": [[s, e, r] for s, (e, r) in sorted(seen.get(name, {}).items())],
                "duplicates": duplicates.get(name, 0),
            }
            for name in ("fast1", "fast2", "slow")
        }
        return web.json_response(out)

    app = web.Application()
    app.router.add_post("/hook/{name}", hook)
    app.router.add_get("/_stats", stats)
    return app


async def serve(port: int) -> None:
    runner = web.AppRunner(build(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.receiver")
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
