"""The demo: emulator + relay + console sink + generated traffic, in one process.

What ``exmail-relay demo`` runs. Nothing else needs to be installed: the emulator serves
both Exmail APIs on a free loopback port, and the relay serves one tenant of each kind:

- ``demo`` (``api = "openapi"``, ``example.com``): the relay listens to the emulator
  like it would to the real server;
- ``demo-api2`` (``api = "api2"``, corpid ``wwdemo0000000001``, ``example.org``): the
  relay's ``/callback/demo-api2`` URL is saved in the emulator (the admin console's
  "save settings" handshake) and the emulator calls it for new mail and unread changes.

Events print as JSON lines on stdout, and the status page and probes are served on
``--port``. A traffic generator drives the emulator's control API: one mail to each
tenant first, then a new mail every second or so to a random member of either, sometimes
a mail being read, sometimes a directory change. ``--amqp-url`` adds the RabbitMQ sink.
"""

from __future__ import annotations

import asyncio
import logging
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from relay.app.settings import Settings
from relay.emulator import Emulator

__all__ = ["TrafficGenerator", "demo_settings", "register_callback", "run_demo"]

log = logging.getLogger("relay.app.demo")

SUBJECTS = (
    "季度销售报告",
    "Weekly sync notes",
    "报销审批提醒",
    "Offsite agenda",
    "合同草稿（第二版）",
    "Build failed on main",
    "客户来访安排",
    "Lunch on Friday?",
)
SENDERS = ("partner@customer.cn", "noreply@github.com", "hr@example.com", "boss@example.com")
DEMO_ADMIN = "admin@example.com"
DEMO_KEY = "exmail-demo-key"
DEMO_API2_TENANT = "demo-api2"
DEMO_API2_CORPID = "wwdemo0000000001"  # the emulator's demo seed: secrets demo-<app>-secret
# DEMO VALUES ONLY, public in this source: the callback's Token and EncodingAESKey that
# the demo saves on both sides. A real tenant gets its own from the admin console.
DEMO_CALLBACK_TOKEN = "exmailRelayDemoOnlyToken"  # noqa: S105 - a public demo value
DEMO_ENCODING_AES_KEY = "DemoOnlyEncodingAESKeyPublicNotASecret12345"


def demo_settings(
    emulator: Emulator, *, journal: Path, port: int, amqp_url: str | None, hold: float
) -> Settings:
    amqp: dict[str, Any] = {"enabled": False}
    if amqp_url is not None:
        amqp = {"enabled": True, "url": amqp_url}
    return Settings(
        journal={"path": journal},
        tenants=[
            {
                "name": "demo",
                "client_id": DEMO_ADMIN,
                "client_secret": DEMO_KEY,
                "api_url": emulator.api_url,
                "token_url": emulator.token_url,
                "login_url": emulator.login_url,
                "hold": hold,
            },
            {
                "name": DEMO_API2_TENANT,
                "api": "api2",
                "corpid": DEMO_API2_CORPID,
                "api_url": emulator.api2_url,
                "contact_secret": "demo-directory-secret",
                "sso_secret": "demo-sso-secret",
                "newmail_secret": "demo-newmail-secret",
                "option_secret": "demo-settings-secret",
                "log_secret": "demo-logs-secret",
                "callback_token": DEMO_CALLBACK_TOKEN,
                "encoding_aes_key": DEMO_ENCODING_AES_KEY,
            },
        ],
        amqp=amqp,
        # Never lease mode, even with a broker: a demo must not take shard leases from
        # a real deployment that shares the broker and the default prefix.
        sharding={"mode": "static"},
        console={"enabled": True},
        http={"port": port},
    )


async def register_callback(
    session: aiohttp.ClientSession, emulator_url: str, callback_url: str
) -> dict[str, Any]:
    """Save the relay's callback URL for the demo's api2 tenant in the emulator, as an
    administrator does in the 新邮件提醒 application: the emulator performs the GET
    handshake against the relay first. RuntimeError when the relay did not pass it."""
    body = {
        "corpid": DEMO_API2_CORPID,
        "url": callback_url,
        "token": DEMO_CALLBACK_TOKEN,
        "encoding_aes_key": DEMO_ENCODING_AES_KEY,
        "agentid": "1000002",
    }
    url = emulator_url.rstrip("/") + "/_emulator/api2/callback"
    async with session.post(url, json=body) as resp:
        answer: dict[str, Any] = await resp.json()
    if not answer.get("saved"):
        raise RuntimeError(f"the emulator did not save the demo callback: {answer.get('error')}")
    return answer


class TrafficGenerator:
    """Drives the emulator's control API like a small company's mail day, for a tenant
    of each API: ``example.com`` (the BizMail OpenApi) and ``example.org`` (the second)."""

    def __init__(
        self,
        base_url: str,
        *,
        interval: float = 1.0,
        rand: random.Random | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self._control = base_url.rstrip("/") + "/_emulator/"
        self._interval = interval
        self._rand = rand or random.Random()
        self._sleep = sleep
        self._hires = 0
        self._api2: set[str] = set()
        self.sent = 0

    async def run(self, session: aiohttp.ClientSession) -> None:
        accounts = await self._accounts(session)
        first = [a for a in accounts if a not in self._api2][:1] + sorted(self._api2)[:1]
        for to in first:  # one mail to each tenant first: both show at once
            await self._mail(session, to)
        while True:
            await self._sleep(self._interval * self._rand.uniform(0.5, 1.5))
            roll = self._rand.random()
            if roll < 0.75 or not accounts:
                await self._mail(session, self._rand.choice(accounts))
            elif roll < 0.92:
                user = self._rand.choice(accounts)
                path = "api2/read" if user in self._api2 else "read"
                await self._post(session, path, {"user": user, "count": 1})
            else:
                accounts.append(await self._hire(session))

    async def _mail(self, session: aiohttp.ClientSession, to: str) -> None:
        sender, subject = self._rand.choice(SENDERS), self._rand.choice(SUBJECTS)
        if to in self._api2:
            await self._post(session, "api2/mail", {"to": to, "from": sender, "title": subject})
        else:
            summary = "This message was generated by exmail-relay demo."
            body = {"to": to, "sender": sender, "subject": subject, "summary": summary}
            await self._post(session, "mail", body)
        self.sent += 1

    async def _hire(self, session: aiohttp.ClientSession) -> str:
        self._hires += 1
        name = f"New Hire {self._hires}"
        if self._hires % 2 == 0:
            userid = f"newhire{self._hires}@example.org"
            body = {"action": "add", "userid": userid, "name": name}
            await self._post(session, "api2/user", body)
            self._api2.add(userid)
            return userid
        alias = f"newhire{self._hires}@example.com"
        await self._post(session, "user", {"action": "add", "alias": alias, "name": name})
        return alias

    async def _accounts(self, session: aiohttp.ClientSession) -> list[str]:
        async with session.get(self._control + "state") as resp:
            state = await resp.json()
        async with session.get(self._control + "api2/state") as resp:
            api2 = await resp.json()
        self._api2 = {m["userid"] for t in api2["tenants"] for m in t["members"]}
        found = [a["alias"] for c in state["companies"] for a in c["accounts"]]
        return found + sorted(self._api2)

    async def _post(self, session: aiohttp.ClientSession, path: str, body: dict[str, Any]) -> None:
        async with session.post(self._control + path, json=body) as resp:
            if resp.status >= 400:
                log.warning("demo traffic refused", extra={"path": path, "status": resp.status})


async def run_demo(
    *,
    port: int,
    amqp_url: str | None,
    interval: float,
    stop: asyncio.Event,
    journal_dir: Path | None = None,
    announce: Callable[[str], None] = print,
) -> None:
    from relay.app.wiring import build_service

    with tempfile.TemporaryDirectory(prefix="exmail-relay-demo-") as tmp:
        directory = journal_dir or Path(tmp)
        async with Emulator(port=0, hold=5.0) as emulator:
            settings = demo_settings(
                emulator,
                journal=directory / "journal.sqlite3",
                port=port,
                amqp_url=amqp_url,
                hold=5.0,
            )
            async with build_service(settings) as running, aiohttp.ClientSession() as session:
                assert running.server is not None  # the demo always serves [http]
                url = running.server.url
                callback = f"{url}callback/{DEMO_API2_TENANT}"
                await register_callback(session, emulator.base_url, callback)
                announce(
                    f"exmail-relay demo: emulator {emulator.base_url}/ · status page {url} · "
                    f"health {url}readyz · metrics {url}metrics · Ctrl-C stops"
                )
                announce(
                    f"tenants: demo (BizMail OpenApi, example.com, listen) · {DEMO_API2_TENANT} "
                    f"(second API, {DEMO_API2_CORPID}, example.org, callback {callback})"
                )
                # One task group owns the traffic: if the generator fails, the relay
                # stops and the failure is raised, not lost.
                async with asyncio.TaskGroup() as group:
                    traffic = group.create_task(
                        TrafficGenerator(emulator.base_url, interval=interval).run(session),
                        name="demo-traffic",
                    )
                    try:
                        await running.service.run(stop)
                    finally:
                        traffic.cancel()
