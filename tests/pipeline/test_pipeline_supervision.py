"""Supervision: a bug in one tenant's listener is logged, shown, and the listener is
restarted, while the other tenant keeps flowing."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiohttp
import pytest

from relay.core.backoff import Backoff
from relay.core.events import Event
from relay.emulator import Emulator
from relay.exmail import ExmailClient
from relay.journal import Journal
from relay.runtime.drainer import Drainer, DrainPolicy
from relay.runtime.listener import Listener
from relay.runtime.supervisor import RelayService
from relay.sinks.console import ConsoleSink
from tests.pipeline.support import ADMIN, KEY, accounts, control
from tests.support import eventually


class FlakyRoute:
    """Routes everything to the console, but raises once for one tenant's mail."""

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self.raised = False

    def __call__(self, event: Event) -> Sequence[str]:
        if event.tenant == self.tenant and event.type == "exmail.mail.new" and not self.raised:
            self.raised = True
            raise RuntimeError("boom: a bug in routing")
        return ["console"]


def client_for(
    emu: Emulator, session: aiohttp.ClientSession, admin: str, key: str, *, listen_timeout: float
) -> ExmailClient:
    return ExmailClient(
        client_id=admin,
        client_secret=key,
        api_url=emu.api_url,
        token_url=emu.token_url,
        login_url=emu.login_url,
        session=session,
        listen_timeout=listen_timeout,
    )


async def test_a_crashed_listener_is_restarted_and_others_are_untouched(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = io.StringIO()
    route = FlakyRoute("buggy")
    async with (
        Emulator(port=0, hold=0.5) as emu,
        Journal(tmp_path / "j.sqlite3") as journal,
        aiohttp.ClientSession() as session,
    ):
        second = {
            "admin": "admin@second.test",
            "key": "second-key",
            "domains": ["second.test"],
            "users": [{"alias": "zoe@second.test", "name": "Zoe"}],
        }
        await control(emu, "company", second)
        listeners = []
        for tenant, admin, key in (
            ("buggy", ADMIN, KEY),
            ("fine", "admin@second.test", "second-key"),
        ):
            client = client_for(emu, session, admin, key, listen_timeout=5)
            listeners.append(Listener(tenant=tenant, client=client, journal=journal, route=route))
        service = RelayService(
            journal=journal,
            listeners=listeners,
            drainers=[Drainer(journal, ConsoleSink(stream=out), DrainPolicy(max_in_flight=1))],
            restart_backoff=Backoff(base=0.1, cap=0.1),
        )
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(stop))
        caplog.set_level(logging.ERROR, logger="relay.runtime.supervisor")
        user = (await accounts(emu))[0]
        await eventually(
            lambda: all(lst.status.state == "connected" for lst in listeners),
            what="every listener connected",
        )
        await control(emu, "mail", {"to": user, "subject": "one"})
        await eventually(lambda: route.raised, what="the bug to fire")
        await control(emu, "mail", {"to": "zoe@second.test", "subject": "two"})
        await control(emu, "mail", {"to": user, "subject": "three"})

        def subjects() -> list[str]:
            return [
                json.loads(line)["data"].get("subject", "")
                for line in out.getvalue().splitlines()
                if '"exmail.mail.new"' in line
            ]

        await eventually(lambda: {"two", "three"} <= set(subjects()), what="both tenants")
        assert service.crashes == {"listen:buggy": 1}
        assert listeners[0].status.failures >= 1
        assert "boom" in (listeners[0].status.last_error or "")
        assert listeners[0].status.state == "connected", "restarted and listening again"
        assert service.task_alive("listen:buggy")
        stop.set()
        await task
    crash_logs = [r for r in caplog.records if r.getMessage() == "worker crashed, restarting"]
    assert len(crash_logs) == 1
    record = crash_logs[0]
    # With the relay's redaction filter installed (another test may have configured
    # logging), the traceback is already rendered into exc_text.
    traceback = record.exc_text or logging.Formatter().formatException(
        record.exc_info or (None, None, None)
    )
    assert "RuntimeError: boom" in traceback


@contextlib.asynccontextmanager
async def held_listener(tmp_path: Path) -> AsyncIterator[tuple[Listener, asyncio.Task[None]]]:
    """A listener whose listen the emulator holds for 60 s, running in its own task."""
    async with (
        Emulator(port=0, hold=60) as emu,
        Journal(tmp_path / "j.sqlite3") as journal,
        aiohttp.ClientSession() as session,
    ):
        client = client_for(emu, session, ADMIN, KEY, listen_timeout=60)
        listener = Listener(
            tenant="acme", client=client, journal=journal, route=lambda _: ["console"]
        )
        task = asyncio.create_task(listener.run())

        async def held() -> bool:
            return bool((await control(emu, "state", method="GET"))["open_listens"] >= 1)

        await eventually(held, what="the listen to be held")
        try:
            yield listener, task
        finally:
            listener.stop()
            await asyncio.gather(task, return_exceptions=True)


async def test_stop_ends_a_held_listen_at_once(tmp_path: Path) -> None:
    """The emulator holds the listen for 60 s; stop() ends it now, and run() returns
    (it is not cancelled: the supervisor sees a clean stop)."""
    async with held_listener(tmp_path) as (listener, task):
        listener.stop()
        listener.stop()  # twice is the same as once
        await asyncio.wait_for(task, 10)
        assert not task.cancelled()
        assert listener.status.state == "stopped"


async def test_a_cancel_from_outside_is_not_taken_for_a_stop(tmp_path: Path) -> None:
    async with held_listener(tmp_path) as (listener, task):
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        assert task.cancelled()
        assert listener.status.state != "stopped", "not shown as a clean stop"
