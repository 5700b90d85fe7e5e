"""A directory change whose ``user/get`` calls fail for a while: a real ``Listener``
against the emulator over loopback, a real journal. While ``user/get`` fails nothing
of the change is committed and the checkpoint keeps the old Ver; once it heals, the
whole change (``directory.changed`` and each user event with its profile) is committed
with the new Ver, each event exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from relay.core.backoff import Backoff
from relay.core.routing import Route, Router
from relay.emulator import Emulator
from relay.exmail import ExmailClient
from relay.journal import Journal
from relay.runtime.listener import Listener
from tests.pipeline.support import ADMIN, KEY, control
from tests.support import eventually

PROBE = "probe"  # a sink nobody drains: every committed event stays claimable
USER_GET = "/openapi/user/get"


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    async with Journal(tmp_path / "journal.sqlite3") as made:
        yield made


@contextlib.asynccontextmanager
async def running_listener(emulator: Emulator, journal: Journal) -> AsyncIterator[Listener]:
    """A listener for the demo company on ``journal``, holding its first listen; stopped
    when the block ends."""
    async with ExmailClient(
        client_id=ADMIN,
        client_secret=KEY,
        api_url=emulator.api_url,
        token_url=emulator.token_url,
        login_url=emulator.login_url,
        timeout=5.0,
        listen_timeout=5.0,
        read_retries=0,
        backoff=Backoff(base=0.01, cap=0.05),
    ) as client:
        made = Listener(
            tenant="acme",
            client=client,
            journal=journal,
            route=Router((Route(PROBE),)),
            backoff=Backoff(base=0.05, cap=0.2),
        )
        task = asyncio.create_task(made.run())
        try:
            await eventually(
                lambda: made.status.state == "connected" and made.status.ver is not None,
                what="the bootstrap and the first listen",
            )
            yield made
        finally:
            made.stop()
            await asyncio.wait_for(task, 15)


@pytest.fixture
async def listener(emulator: Emulator, journal: Journal) -> AsyncIterator[Listener]:
    """A listener for the demo company, bootstrapped and holding its first listen."""
    async with running_listener(emulator, journal) as made:
        yield made


async def committed(journal: Journal) -> list[dict[str, Any]]:
    """Every event the listener committed, decoded, oldest first."""
    rows = await journal.claim(PROBE, limit=1000, due_only=False)
    return [json.loads(row.body) for row in rows]


async def user_get_requests(emu: Emulator) -> int:
    state = await control(emu, "state", method="GET")
    return int(state["requests"].get(USER_GET, 0))


@pytest.mark.parametrize("kind", ["errcode_1002", "http_500"])
async def test_a_transient_user_get_fault_commits_the_change_once_or_not_at_all(
    emulator: Emulator, journal: Journal, listener: Listener, kind: str
) -> None:
    old_ver = await journal.checkpoint("acme")
    assert old_ver is not None
    before = await committed(journal)
    assert [e["type"] for e in before] == ["exmail.directory.changed"]  # the bootstrap

    await control(emulator, "faults", {"kind": kind, "count": 100_000, "path": USER_GET})
    await control(emulator, "user", {"action": "add", "alias": "hire@example.com", "name": "Hire"})
    await control(
        emulator, "user", {"action": "mod", "alias": "bob@example.com", "position": "CTO"}
    )
    new_ver = (await control(emulator, "state", method="GET"))["companies"][0]["ver"]
    assert new_ver > old_ver

    # The change is seen and its expansion fails, again and again: each try is one
    # failure of the listener and at least one refused user/get.
    await eventually(lambda: listener.status.failures >= 3, what="three failed expansions")
    assert await user_get_requests(emulator) >= 3
    # (Its state flips between "backoff" and "connected": each retry's listen succeeds.)
    assert (listener.status.last_error or "").startswith("directory: ")
    assert await journal.checkpoint("acme") == old_ver
    assert listener.status.ver == old_ver
    assert await committed(journal) == before, "nothing of the change is committed"

    await control(emulator, "faults", method="DELETE")

    async def at_new_ver() -> bool:
        return await journal.checkpoint("acme") == new_ver

    await eventually(at_new_ver, what=f"the checkpoint to reach Ver {new_ver}")
    await eventually(lambda: listener.status.state == "connected", what="the listener back")
    after = await committed(journal)
    change = after[len(before) :]
    assert after[: len(before)] == before
    [directory] = [e for e in change if e["type"] == "exmail.directory.changed"]
    assert directory["data"] == {"old_ver": old_ver, "new_ver": new_ver, "count": 2}
    users = {e["data"]["alias"]: e for e in change if e["type"].startswith("exmail.user.")}
    assert sorted(users) == ["bob@example.com", "hire@example.com"]
    assert len(change) == 3, "each event exactly once"
    assert len({e["id"] for e in after}) == len(after)
    assert users["hire@example.com"]["type"] == "exmail.user.added"
    assert users["hire@example.com"]["data"]["profile"]["name"] == "Hire"
    assert users["bob@example.com"]["type"] == "exmail.user.updated"
    assert users["bob@example.com"]["data"]["profile"]["position"] == "CTO"
    assert all(u["data"]["ver"] == new_ver for u in users.values())
    assert listener.status.ver == new_ver


async def test_a_pending_change_survives_a_restart_and_is_committed_once(
    emulator: Emulator, journal: Journal, listener: Listener
) -> None:
    old_ver = await journal.checkpoint("acme")
    assert old_ver is not None
    await control(emulator, "faults", {"kind": "http_500", "count": 100_000, "path": USER_GET})
    await control(emulator, "user", {"action": "mod", "alias": "bob@example.com", "position": "VP"})
    new_ver = (await control(emulator, "state", method="GET"))["companies"][0]["ver"]

    async def recorded() -> bool:
        return await journal.directory_pending("acme") is not None

    await eventually(recorded, what="the announced Ver in the journal")
    pending = await journal.directory_pending("acme")
    assert pending is not None and pending[0] == new_ver
    assert await journal.checkpoint("acme") == old_ver
    # Mail goes on while the change waits.
    alias = "alice@example.com"
    await control(emulator, "mail", {"to": alias, "subject": "while the directory waits"})

    async def mail_committed() -> bool:
        return any(e["type"] == "exmail.mail.new" for e in await committed(journal))

    await eventually(mail_committed, what="the mail committed while the change waits")
    assert listener.status.state == "connected"
    listener.stop()

    # A new listener on the same journal resumes the change without being told again.
    await control(emulator, "faults", method="DELETE")
    async with running_listener(emulator, journal) as again:

        async def at_new_ver() -> bool:
            return await journal.checkpoint("acme") == new_ver

        await eventually(at_new_ver, what=f"the checkpoint at Ver {new_ver}")
        assert await journal.directory_pending("acme") is None
        assert again.status.directory_pending is None
    events = await committed(journal)
    updates = [e for e in events if e["type"] == "exmail.user.updated"]
    assert [u["data"]["alias"] for u in updates] == ["bob@example.com"]
    assert updates[0]["data"]["profile"]["position"] == "VP"
    assert len([e for e in events if e["type"] == "exmail.directory.changed"]) == 2
