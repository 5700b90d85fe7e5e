"""End to end: emulator -> listener -> journal -> webhook sink -> loopback receiver."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
from standardwebhooks.webhooks import Webhook

from relay.app.settings import HttpSettings, JournalSettings, Settings, TenantSettings
from relay.app.wiring import build_service
from relay.emulator import Emulator
from tests.support import eventually
from tests.webhook.conftest import Receiver, hook, make_secret

ADMIN = "admin@example.com"
KEY = "exmail-demo-key"


async def test_mail_in_the_emulator_arrives_as_a_signed_webhook(
    receiver: Receiver, tmp_path: Path
) -> None:
    secret = make_secret()
    async with Emulator(port=0, hold=0.5) as emu, aiohttp.ClientSession() as http:
        async with http.get(emu.control_url + "state") as resp:
            state = await resp.json()
        alias = state["companies"][0]["accounts"][0]
        alias = alias if isinstance(alias, str) else alias["alias"]
        settings = Settings(
            journal=JournalSettings(path=tmp_path / "relay.sqlite3"),
            tenants=[
                TenantSettings(
                    name="acme",
                    client_id=ADMIN,
                    client_secret=KEY,
                    api_url=emu.api_url,
                    token_url=emu.token_url,
                    login_url=emu.login_url,
                    hold=0.5,
                )
            ],
            http=HttpSettings(enabled=False),
            webhooks=[hook(receiver, "e2e", secret=[secret], types=["exmail.mail.new"])],
        )
        async with build_service(settings) as running:
            stop = asyncio.Event()
            task = asyncio.create_task(running.service.run(stop))
            try:
                listener = running.service.listeners[0]
                await eventually(
                    lambda: listener.status.state == "connected", what="the first listen"
                )
                async with http.post(emu.control_url + "mail", json={"to": alias}) as resp:
                    assert resp.status == 200, await resp.text()
                got = await receiver.wait_for("e2e", 1, within=15)
            finally:
                stop.set()
                await task
    payload = Webhook(secret).verify(got[0].body, got[0].headers)
    assert payload["type"] == "exmail.mail.new"
    assert payload["source"] == "exmail-relay/acme"
    assert payload["data"]["user"].lower() == alias.lower()
    assert got[0].headers["webhook-id"] == payload["id"]
