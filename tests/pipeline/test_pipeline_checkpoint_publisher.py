"""Checkpoint publishing is an explicit dependency of the listener (issue 18, item 11):
a real ``Listener`` against the emulator over loopback and a real journal hands every
Ver it commits, and the one it resumes from, to the publisher it was given, whatever
observer it has. Before, publishing hung off the observer seam, so an observer
replaced for metrics silently switched it off."""

from __future__ import annotations

import asyncio
from pathlib import Path

from relay.core.backoff import Backoff
from relay.core.routing import Route, Router
from relay.emulator import Emulator
from relay.exmail import ExmailClient
from relay.journal import Journal
from relay.runtime.checkpointing import CheckpointPublisher
from relay.runtime.listener import Listener
from relay.runtime.observer import Observer
from tests.pipeline.support import ADMIN, KEY, control
from tests.support import eventually


class Recorded:
    """A publisher that keeps what it is handed (the protocol is one method)."""

    def __init__(self) -> None:
        self.vers: list[tuple[str, int]] = []

    def publish(self, tenant: str, ver: int) -> None:
        self.vers.append((tenant, ver))


async def run_listener(
    emulator: Emulator, journal: Journal, publisher: CheckpointPublisher, observer: Observer
) -> tuple[Listener, asyncio.Task[None], ExmailClient]:
    client = ExmailClient(
        client_id=ADMIN,
        client_secret=KEY,
        api_url=emulator.api_url,
        token_url=emulator.token_url,
        login_url=emulator.login_url,
        timeout=5.0,
        listen_timeout=5.0,
        backoff=Backoff(base=0.01, cap=0.05),
    )
    await client.__aenter__()
    listener = Listener(
        tenant="acme",
        client=client,
        journal=journal,
        route=Router((Route("probe"),)),
        observer=observer,
        checkpoints=publisher,
    )
    return listener, asyncio.create_task(listener.run()), client


async def test_every_committed_ver_goes_to_the_publisher_whatever_the_observer(
    emulator: Emulator, tmp_path: Path
) -> None:
    class Replaced(Observer):
        """An observer of its own, as a deployment's metrics might be."""

    publisher = Recorded()
    async with Journal(tmp_path / "journal.sqlite3") as journal:
        listener, task, client = await run_listener(emulator, journal, publisher, Replaced())
        try:
            await eventually(lambda: listener.status.ver is not None, what="the bootstrap")
            first = listener.status.ver
            assert first is not None and publisher.vers == [("acme", first)]
            await control(emulator, "user", {"action": "add", "alias": "new@example.com"})
            await eventually(
                lambda: listener.status.ver != first, what="the directory change committed"
            )
            assert publisher.vers[-1] == ("acme", listener.status.ver)
        finally:
            listener.stop()
            await asyncio.wait_for(task, 15)
            await client.__aexit__(None, None, None)
        # A listener that resumes from its journal publishes the Ver it resumes from.
        again = Recorded()
        listener, task, client2 = await run_listener(emulator, journal, again, Observer())
        try:
            await eventually(lambda: again.vers, what="the resumed Ver")
            assert again.vers == [("acme", await journal.checkpoint("acme"))]
        finally:
            listener.stop()
            await asyncio.wait_for(task, 15)
            await client2.__aexit__(None, None, None)
