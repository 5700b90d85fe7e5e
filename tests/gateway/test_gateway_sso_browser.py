"""A real browser follows a signed SSO link: headless Chromium, the relay's ``/sso/...``
route of the running relay (``[[clients]] link_secret``), and the emulator's login page at
the end of the redirect."""

from __future__ import annotations

import time

from relay.app.wiring import Running
from relay.core.links import sign_sso_link
from tests.gateway.conftest import KIOSK_LINK_SECRET, PORTAL_LINK_SECRET, base
from tests.support import chromium


async def chromium_dom(url: str) -> str:
    """The DOM Chromium ends on after loading ``url`` (following redirects)."""
    return await chromium("--virtual-time-budget=3000", "--dump-dom", url)


async def test_chromium_follows_a_signed_link_into_the_right_mailbox(
    relay: Running,
) -> None:
    url = base(relay)  # the running relay's own server, not a mini app

    def signed(email: str, secret: str) -> str:
        return sign_sso_link(
            base_url=url,
            tenant="acme",
            email=email,
            secret=secret.encode(),
            expires_at=int(time.time()) + 300,
        )

    single = signed("Carol@Example.com", KIOSK_LINK_SECRET)  # kiosk: single_use
    landed = await chromium_dom(single)
    replayed = await chromium_dom(single)
    other = await chromium_dom(signed("bob@example.com", PORTAL_LINK_SECRET))
    assert ">carol@example.com</h1>" in landed and 'id="account"' in landed
    assert "This sign-in link is not valid" in replayed
    assert 'id="account"' not in replayed
    assert ">bob@example.com</h1>" in other and 'id="account"' in other
