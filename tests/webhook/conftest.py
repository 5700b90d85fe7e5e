"""Fixtures for the webhook tests: a real aiohttp receiver on 127.0.0.1 (port 0) whose
answers each test scripts per path, and a harness running real webhook sinks and
drainers over a real journal file."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from relay.app.settings import WebhookSettings
from relay.app.wiring import open_webhooks
from relay.core import events
from relay.core.routing import Router
from relay.journal import Journal
from relay.ops.metrics import Metrics, PrometheusObserver
from relay.runtime.drainer import Drainer
from tests.support import eventually


def make_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


@dataclass(frozen=True)
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    hang: bool = False


@dataclass(frozen=True)
class Request:
    at: float
    path: str
    headers: dict[str, str]
    body: bytes
    status: int


class Receiver:
    """Scripted answers per path (consumed in order, then ``default``); records requests."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.hanging: list[str] = []  # paths of requests held until ``release``
        self.scripts: dict[str, list[Answer]] = {}
        self.defaults: dict[str, Answer] = {}
        self.release = asyncio.Event()
        self.arrived = asyncio.Condition()
        self.base_url = ""

    def url(self, path: str) -> str:
        return f"{self.base_url}/hook/{path}"

    def script(self, path: str, *answers: Answer, default: Answer | None = None) -> None:
        self.scripts[path] = list(answers)
        if default is not None:
            self.defaults[path] = default

    def to(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    async def wait_for(
        self, path: str, count: int, *, status: int = 200, within: float = 10
    ) -> list[Request]:
        """Wait until ``path`` got ``count`` requests answered with ``status``."""

        def enough() -> bool:
            return len([r for r in self.to(path) if r.status == status]) >= count

        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(enough), within)
        return [r for r in self.to(path) if r.status == status]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["name"]
        body = await request.read()
        script = self.scripts.get(path, [])
        answer = script.pop(0) if script else self.defaults.get(path, Answer())
        if answer.hang:
            self.hanging.append(path)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.release.wait(), 30)
            raise web.HTTPServiceUnavailable
        self.requests.append(
            Request(time.monotonic(), path, dict(request.headers), body, answer.status)
        )
        async with self.arrived:
            self.arrived.notify_all()
        body_out = answer.body
        if b"{signature}" in body_out:
            body_out = body_out.replace(
                b"{signature}", request.headers["webhook-signature"].encode()
            )
        return web.Response(status=answer.status, headers=answer.headers, body=body_out)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook/{name}", rec.handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    rec.base_url = f"http://127.0.0.1:{port}"
    try:
        yield rec
    finally:
        rec.release.set()
        await runner.cleanup()


def hook(receiver: Receiver, name: str, **kw: Any) -> WebhookSettings:
    kw.setdefault("secret", [make_secret()])
    kw.setdefault("retry_schedule", [0.2, 0.4])
    kw.setdefault("timeout", 5)
    return WebhookSettings(name=name, url=kw.pop("url", receiver.url(name)), **kw)


_counter = 0


def mail(tenant: str = "acme", user: str = "bob@acme.test") -> events.Event:
    global _counter
    _counter += 1
    return events.mail_new(
        tenant=tenant,
        user=user,
        mail_id=f"m{_counter}-{time.monotonic_ns()}",
        sender="alice@example.com",
        receiver=user,
        subject="hello",
        summary="hi",
        unread=1,
        now=datetime.now(UTC),
    )


class Harness:
    """Webhook sinks + drainers over a journal file, as ``relay.app.wiring`` builds them."""

    def __init__(self, path: Path, hooks: Sequence[WebhookSettings]) -> None:
        self.path = path
        self.hooks = list(hooks)
        self._stack = contextlib.AsyncExitStack()
        # Each harness reports into a registry of its own: what a test reads is what
        # this harness's sinks and drainers reported, never another test's counts.
        self.metrics = Metrics(CollectorRegistry())
        self.observer = PrometheusObserver(self.metrics)
        self.drainers: list[Drainer] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.router = Router(())

    async def __aenter__(self) -> Harness:
        self.journal = await self._stack.enter_async_context(Journal(self.path))
        handles = await self._stack.enter_async_context(open_webhooks(self.hooks, self.observer))
        self.router = Router(tuple(plan.route for plan in handles))
        self.descriptions = {plan.sink.name: plan.description for plan in handles}
        for plan in handles:
            drainer = Drainer(
                self.journal, plan.sink, plan.policy, observer=self.observer.sink(plan.sink.name)
            )
            self.drainers.append(drainer)
            self.tasks.append(asyncio.create_task(drainer.run()))
        return self

    def sample(self, name: str, **labels: str) -> float:
        """The value of one sample of this harness's metrics (0 when never set)."""
        value = self.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    async def append(self, *evs: events.Event, tenant: str = "acme") -> None:
        await self.journal.append(tenant, list(evs), route=self.router)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*(d.stop(0.5) for d in self.drainers))
        await asyncio.gather(*self.tasks)
        await self._stack.aclose()


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    return tmp_path / "journal.sqlite3"


async def settled(journal: Journal, *sinks: str, within: float = 10.0) -> None:
    """Wait until each of ``sinks`` has no pending rows: every outcome is recorded, so
    no attempt is still to come."""

    async def none_pending() -> bool:
        for sink in sinks:
            if await journal.claim(sink, limit=1, due_only=False):
                return False
        return True

    await eventually(none_pending, seconds=within, what=f"no pending rows for {sinks}")
