"""A tenant whose directory expansion keeps failing keeps backing off, and its mail goes on.

The listen answers (the server holds a newer Ver), but every ``user/get`` fails. The
directory worker backs off on its own (one log line, not one per try, and no
"recovered" until a change is committed) while the listen loop keeps listening: the
listen is no fault at all.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from relay.app.settings import Settings
from relay.app.wiring import client_for
from relay.core.backoff import Backoff
from relay.core.routing import Router
from relay.emulator import Emulator
from relay.exmail import ExmailClient
from relay.journal import Journal
from relay.runtime.listener import Listener
from relay.runtime.observer import Observer, TenantObserver
from tests.pipeline.support import ADMIN, KEY, accounts, control
from tests.support import eventually

USER_GET = "/openapi/user/get"


async def requests_to(emu: Emulator, path: str) -> int:
    state = await control(emu, "state", method="GET")
    return int(state["requests"].get(path, 0))


def client_of(emu: Emulator, **options: Any) -> ExmailClient:
    """A client of the emulator's demo company; ``options`` override keywords."""
    return ExmailClient(
        client_id=ADMIN,
        client_secret=SecretStr(KEY),
        api_url=emu.api_url,
        token_url=emu.token_url,
        login_url=emu.login_url,
        **options,
    )


async def test_failing_user_get_keeps_backing_off_until_a_whole_cycle_succeeds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="relay.runtime")
    async with (
        Emulator(port=0, hold=0.3) as emu,
        client_of(emu, read_retries=0) as client,  # the client's own read retries: none
        Journal(tmp_path / "journal.sqlite3") as journal,
    ):
        listener = Listener(
            tenant="acme",
            client=client,
            journal=journal,
            route=Router(()),
            backoff=Backoff(base=0.02, cap=0.1),  # short, so many cycles fit in the test
        )
        task = asyncio.create_task(listener.run())
        try:
            await eventually(
                lambda: listener.status.ver is not None and listener.status.state == "connected",
                what="the listener connected with a Ver",
            )
            old_ver = listener.status.ver
            user = (await accounts(emu))[0]
            await control(emu, "faults", {"kind": "http_500", "count": 10_000, "path": USER_GET})
            await control(emu, "user", {"action": "mod", "alias": user, "position": "CTO"})

            async def six_failed_expansions() -> bool:
                return await requests_to(emu, USER_GET) >= 6

            await eventually(six_failed_expansions, what="six failed user/get calls")
            during = [r.getMessage() for r in caplog.records]
            assert during.count("directory expansion recovered") == 0, during
            assert during.count("directory expansion failed, mail goes on; retrying") == 1, during
            assert during.count("upstream fault, backing off") == 0, during  # listen is fine
            assert await journal.checkpoint("acme") == old_ver  # nothing half-committed
            assert listener.status.state == "connected"
            pending = listener.status.directory_pending
            assert pending is not None and pending.attempts >= 6
            assert (pending.last_error or "").startswith("directory: ")

            await control(emu, "faults", method="DELETE")

            async def committed() -> bool:
                return await journal.checkpoint("acme") != old_ver

            await eventually(committed, what="the directory change committed")
            after = [r.getMessage() for r in caplog.records]
            assert after.count("directory expansion recovered") == 1, after
            assert listener.status.state == "connected"
            assert listener.status.directory_pending is None
        finally:
            listener.stop()
            await task


class Outcomes(TenantObserver):
    def __init__(self) -> None:
        self.listens: Counter[str] = Counter()

    def listen(self, outcome: str) -> None:
        self.listens[outcome] += 1


class CountingObserver(Observer):
    def __init__(self) -> None:
        self.outcomes = Outcomes()

    def tenant(self, tenant: str) -> TenantObserver:
        return self.outcomes


async def test_a_listen_answer_over_the_cap_is_counted_and_logged_with_its_size(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="relay.runtime.listener")
    cap = 64 * 1024
    observer = CountingObserver()
    async with (
        Emulator(port=0, hold=0.3) as emu,
        client_of(emu, max_response_bytes=cap) as client,
        Journal(tmp_path / "journal.sqlite3") as journal,
    ):
        listener = Listener(
            tenant="acme",
            client=client,
            journal=journal,
            route=Router(()),
            backoff=Backoff(base=0.02, cap=0.1),
            observer=observer,
        )
        task = asyncio.create_task(listener.run())
        try:
            await eventually(
                lambda: listener.status.state == "connected", what="the listener connected"
            )
            user = (await accounts(emu))[0]
            big = [{"to": user, "summary": "x" * 1000} for _ in range(100)]  # ~110 KB answer
            await control(emu, "mail", {"mails": big})
            await eventually(
                lambda: observer.outcomes.listens["too_large"] >= 1, what="a too_large listen"
            )
            assert re.search(rf"body over {cap} bytes", listener.status.last_error or "")
            faults = [r for r in caplog.records if r.getMessage() == "upstream fault, backing off"]
            assert [getattr(r, "fault", None) for r in faults] == ["too_large"]
            await control(emu, "mail", {"to": user, "subject": "small"})
            await eventually(
                lambda: (
                    listener.status.state == "connected"
                    and listener.status.events_by_type["exmail.mail.new"] >= 1
                ),
                what="the next, small answer taken",
            )
        finally:
            listener.stop()
            await task


def test_the_cap_is_a_tenant_setting() -> None:
    settings = Settings(
        tenants=[
            {"name": "acme", "client_id": ADMIN, "client_secret": KEY, "max_response_bytes": 70_000}
        ]
    )
    assert client_for(settings.tenants[0]).max_response_bytes == 70_000
