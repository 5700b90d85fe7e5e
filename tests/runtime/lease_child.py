"""A replica in its own process, for the lease tests: runs one :class:`LeaseManager` and
prints its owned shards as a JSON line whenever they change, until it is killed.

Usage: ``python -m tests.runtime.lease_child URL PREFIX REPLICA HEARTBEAT TICK``
"""

from __future__ import annotations

import asyncio
import json
import sys

from pydantic import SecretStr

from relay.core.shards import LeaseChange
from relay.runtime.leases import LeaseManager
from tests.support import DEPLOYMENT_SECRET


async def main(url: str, prefix: str, replica: str, heartbeat: int, tick: float) -> None:
    manager: LeaseManager | None = None

    def report(_change: LeaseChange) -> None:
        assert manager is not None
        print(json.dumps(sorted(manager.owned)), flush=True)

    manager = LeaseManager(
        url=SecretStr(url),
        secrets=[SecretStr(DEPLOYMENT_SECRET)],
        replica_id=replica,
        prefix=prefix,
        heartbeat=heartbeat,
        tick=tick,
        on_change=report,
    )
    async with manager:
        await asyncio.Event().wait()


if __name__ == "__main__":
    url, prefix, replica, heartbeat, tick = sys.argv[1:6]
    asyncio.run(main(url, prefix, replica, int(heartbeat), float(tick)))
