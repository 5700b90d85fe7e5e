"""A real browser follows a signed SSO link: headless Chromium, the relay's ``/sso/...``
route with a real ExmailClient, and the emulator's login page at the end of the redirect."""

from __future__ import annotations

import asyncio
import shutil
import time

from aiohttp import web
from pydantic import SecretStr

from relay.emulator import Emulator
from relay.exmail import ExmailClient
from relay.gateway.sso_links import sso_link_route
from relay.links import SeenLinks, sign_sso_link
from tests.gateway.sso_support import ADMIN, KEY, serving

SECRET = b"browser-test-link-secret"


async def chromium_dom(url: str) -> str:
    """The DOM Chromium ends on after loading ``url`` (following redirects)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium is not None, "chromium is required (apt-get install -y chromium)"
    proc = await asyncio.create_subprocess_exec(
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--virtual-time-budget=3000",
        "--dump-dom",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 45)
    assert proc.returncode == 0
    return out.decode()


async def test_chromium_follows_a_signed_link_into_the_right_mailbox() -> None:
    async with (
        Emulator(port=0, hold=0.5) as emu,
        ExmailClient(
            client_id=ADMIN,
            client_secret=KEY,
            api_url=emu.api_url,
            token_url=emu.token_url,
            login_url=emu.login_url,
            timeout=5.0,
        ) as client,
    ):
        app = web.Application()
        app.add_routes(
            [
                sso_link_route(
                    secrets_for_tenant=lambda t: [("portal", SecretStr(SECRET.decode()), True)],
                    client_for_tenant=lambda t: client if t == "acme" else None,
                    seen=SeenLinks(),
                )
            ]
        )
        async with serving(app) as url:
            link = sign_sso_link(
                base_url=url,
                tenant="acme",
                email="Carol@Example.com",
                secret=SECRET,
                expires_at=int(time.time()) + 300,
            )
            landed = await chromium_dom(link)
            replayed = await chromium_dom(link)
            other = await chromium_dom(
                sign_sso_link(
                    base_url=url,
                    tenant="acme",
                    email="bob@example.com",
                    secret=SECRET,
                    expires_at=int(time.time()) + 300,
                )
            )
    assert '<h1 id="account">carol@example.com</h1>' in landed
    assert "This sign-in link is not valid" in replayed
    assert 'id="account"' not in replayed
    assert '<h1 id="account">bob@example.com</h1>' in other
