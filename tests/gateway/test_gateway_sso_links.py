"""The browser route of signed SSO links (:mod:`relay.gateway.sso_links`) against the real
emulator: a good link lands on the mailbox; tampered, expired, malformed and replayed
links get the same 403 page; never an open redirect; the audit line holds no secret."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from relay.core.links import SeenLinks, sign_sso_link
from relay.emulator import Emulator
from relay.exmail import ExmailClient
from relay.gateway.sso_links import LinkSecret, sso_link_route
from tests.gateway.conftest import control
from tests.gateway.sso_support import ADMIN, KEY, requests_to, serving

NOW = 1_800_000_000
PORTAL = b"portal-link-secret"
KIOSK = b"kiosk-link-secret"
AUTHKEY = "/openapi/mail/authkey"


class Clock:
    def __init__(self) -> None:
        self.now = float(NOW)

    def __call__(self) -> float:
        return self.now


@dataclass
class Relay:
    url: str
    clock: Clock
    client: ExmailClient
    emulator: Emulator

    def link(
        self, email: str, *, secret: bytes = PORTAL, tenant: str = "acme", ttl: int = 300
    ) -> str:
        return sign_sso_link(
            base_url=self.url, tenant=tenant, email=email, secret=secret, expires_at=NOW + ttl
        )


def secrets_for(tenant: str) -> list[LinkSecret]:
    if tenant != "acme":
        return []
    return [("portal", SecretStr(PORTAL.decode()), False), ("kiosk", KIOSK, True)]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
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
        clock = Clock()
        app = web.Application()
        app.add_routes(
            [
                sso_link_route(
                    secrets_for_tenant=secrets_for,
                    client_for_tenant=lambda t: client if t in ("acme", "nolinks") else None,
                    seen=SeenLinks(max_entries=100),
                    clock=clock,
                )
            ]
        )
        async with serving(app) as url:
            yield Relay(url, clock, client, emu)


async def visit(http: aiohttp.ClientSession, url: str, **kw: object) -> tuple[int, str, str]:
    async with http.get(url, allow_redirects=False, **kw) as resp:  # type: ignore[arg-type]
        return resp.status, resp.headers.get("Location", ""), await resp.text()


def audit_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "relay.gateway.audit"]


async def test_a_good_link_lands_on_the_right_mailbox(
    relay: Relay, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "relay.gateway.audit")
    status, location, _ = await visit(http, relay.link("Alice@Example.com"))
    assert status == 302
    assert location.startswith(relay.emulator.login_url + "?")
    query = parse_qs(urlsplit(location).query)
    assert query["user"] == ["alice@example.com"] and query["agent"] == [ADMIN]
    async with http.get(location) as resp:
        assert resp.status == 200
        assert "<h1 id='account'>alice@example.com</h1>" in await resp.text()
    # The relay's own token, fetched once; the browser never saw it.
    assert await requests_to(http, relay.emulator, "/cgi-bin/token") == 1
    token = await relay.client.token()
    (line,) = audit_lines(caplog)
    assert (line.client, line.tenant, line.user, line.outcome) == (  # type: ignore[attr-defined]
        "portal",
        "acme",
        "alice@example.com",
        "redirected",
    )
    logged = " ".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records)
    sig = parse_qs(urlsplit(relay.link("Alice@Example.com")).query)["sig"][0]
    for secret in (sig, query["ticket"][0], token, PORTAL.decode()):
        assert secret not in logged


async def test_tampered_expired_malformed_and_foreign_links_get_one_403_page(
    relay: Relay, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "relay.gateway.audit")
    good = relay.link("alice@example.com")
    status, _, page = await visit(http, good.replace("/sso/acme/alice@", "/sso/acme/bob@"))
    assert status == 403
    bad = [
        good.replace("exp=1800000300", "exp=1800000301"),
        good[:-1] + ("A" if good[-1] != "A" else "B"),
        good.replace("/sso/acme/", "/sso/nolinks/"),  # a tenant no client signs for
        good.replace("/sso/acme/", "/sso/elsewhere/"),  # a tenant the relay does not serve
        good.split("&sig=")[0],
        good.split("?")[0],
        relay.link("alice@example.com", secret=b"someone else's secret"),
    ]
    for url in bad:
        assert await visit(http, url) == (403, "", page), url
    relay.clock.now = NOW + 300 + 30  # expiry plus the allowed skew: still good
    assert (await visit(http, good))[0] == 302
    relay.clock.now += 1
    assert await visit(http, good) == (403, "", page)
    assert "not valid" in page and "signature" not in page
    outcomes = [(r.client, r.outcome) for r in audit_lines(caplog)]  # type: ignore[attr-defined]
    assert outcomes == [
        ("-", "bad_signature"),
        ("-", "bad_signature"),
        ("-", "bad_signature"),
        ("-", "no_link_secret"),
        ("-", "unknown_tenant"),
        ("-", "malformed"),
        ("-", "malformed"),
        ("-", "bad_signature"),
        ("portal", "redirected"),
        ("portal", "expired"),
    ]


async def test_a_single_use_link_is_refused_the_second_time(
    relay: Relay, http: aiohttp.ClientSession
) -> None:
    once = relay.link("bob@example.com", secret=KIOSK)
    status, location, _ = await visit(http, once)
    assert status == 302
    async with http.get(location) as resp:
        assert "<h1 id='account'>bob@example.com</h1>" in await resp.text()
    assert (await visit(http, once))[0] == 403
    relay.clock.now += 60  # still within its time: still refused
    assert (await visit(http, once))[0] == 403
    # A reusable client's link may be followed again (each visit gets a fresh ticket).
    again = relay.link("bob@example.com")
    assert (await visit(http, again))[0] == 302
    assert (await visit(http, again))[0] == 302
    assert await requests_to(http, relay.emulator, "/openapi/mail/authkey") == 3


async def test_a_link_living_longer_than_max_link_ttl_is_refused_like_a_bad_one(
    relay: Relay, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "relay.gateway.audit")
    _, _, refused = await visit(http, relay.link("alice@example.com", secret=b"wrong-secret"))
    month = relay.link("alice@example.com", ttl=30 * 86400)
    assert await visit(http, month) == (403, "", refused)  # the same page as a bad link
    # 600 s (the default max_link_ttl) plus the 30 s of clock skew allowed: still good.
    assert (await visit(http, relay.link("alice@example.com", ttl=630)))[0] == 302
    assert await visit(http, relay.link("alice@example.com", ttl=631)) == (403, "", refused)
    outcomes = [(r.client, r.outcome) for r in audit_lines(caplog)]  # type: ignore[attr-defined]
    assert outcomes == [
        ("-", "bad_signature"),
        ("portal", "too_long"),
        ("portal", "redirected"),
        ("portal", "too_long"),
    ]
    assert await requests_to(http, relay.emulator, "/openapi/mail/authkey") == 1


async def test_an_upstream_error_leaves_a_single_use_link_usable(
    relay: Relay, http: aiohttp.ClientSession
) -> None:
    once = relay.link("bob@example.com", secret=KIOSK)
    await control(http, relay.emulator, "faults", {"kind": "api_error", "path": AUTHKEY})
    assert (await visit(http, once))[0] == 502  # Exmail failed: no redirect was answered
    assert (await visit(http, once))[0] == 302  # so the retry gets in
    assert (await visit(http, once))[0] == 403  # and now it is spent
    assert await requests_to(http, relay.emulator, AUTHKEY) == 2


async def test_never_an_open_redirect(relay: Relay, http: aiohttp.ClientSession) -> None:
    link = relay.link("alice@example.com") + "&next=https://evil.example/&login_url=https://evil"
    status, location, _ = await visit(
        http, link, headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"}
    )
    assert status == 302
    split = urlsplit(location)
    assert f"{split.scheme}://{split.netloc}{split.path}" == relay.emulator.login_url
    assert "evil" not in location


async def test_an_upstream_refusal_is_a_502_page(
    relay: Relay, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "relay.gateway.audit")
    status, location, page = await visit(http, relay.link("nobody@example.com"))
    assert (status, location) == (502, "")
    assert "unavailable" in page
    (line,) = audit_lines(caplog)
    assert line.outcome == "upstream_error (NotFound)"  # type: ignore[attr-defined]


async def test_single_use_without_memory_or_room_is_refused(
    relay: Relay, http: aiohttp.ClientSession
) -> None:
    app = web.Application()
    app.add_routes(
        [
            sso_link_route(
                secrets_for_tenant=secrets_for,
                client_for_tenant=lambda t: relay.client,
                seen=SeenLinks(max_entries=1),
                clock=relay.clock,
            ),
            sso_link_route(
                secrets_for_tenant=secrets_for,
                client_for_tenant=lambda t: relay.client,
                clock=relay.clock,
                path="/nomemory/sso/{tenant}/{email}",
            ),
        ]
    )
    async with serving(app) as url:
        first = sign_sso_link(
            base_url=url, tenant="acme", email="alice@example.com", secret=KIOSK, expires_at=NOW + 9
        )
        second = sign_sso_link(
            base_url=url, tenant="acme", email="bob@example.com", secret=KIOSK, expires_at=NOW + 9
        )
        assert (await visit(http, first))[0] == 302
        assert (await visit(http, second))[0] == 503  # full: not forgetting `first` early
        assert (await visit(http, first.replace(url, url + "/nomemory")))[0] == 503
