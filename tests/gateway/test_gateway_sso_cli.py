"""``exmail-relay sso-link`` as a subprocess: the link it prints passes the relay's route
and lands on the emulator's page; usage errors exit 2 without a traceback."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import aiohttp
from aiohttp import web

from relay.app.wiring import Running
from relay.core.links import LinkCheck, SeenLinks, verify_sso_link
from relay.emulator import Emulator
from relay.exmail import ExmailClient
from relay.gateway.sso_links import sso_link_route
from tests.gateway.conftest import KIOSK_LINK_SECRET, PORTAL_LINK_SECRET, base
from tests.gateway.sso_support import ADMIN, KEY, serving

ROOT = Path(__file__).resolve().parents[2]
SECRET = "cli-link-secret"


async def sso_link(*args: str, **env: str) -> tuple[int, str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "relay",
        "sso-link",
        *args,
        env={**base, **env},
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_the_printed_link_logs_in_through_the_route(tmp_path: Path) -> None:
    secret_file = tmp_path / "link-secret"
    secret_file.write_text(SECRET + "\n")
    async with (
        Emulator(port=0, hold=0.5) as emu,
        ExmailClient(
            client_id=ADMIN,
            client_secret=KEY,
            api_url=emu.api_url,
            token_url=emu.token_url,
            login_url=emu.login_url,
        ) as client,
    ):
        app = web.Application()
        app.add_routes(
            [
                sso_link_route(
                    secrets_for_tenant=lambda t: [("cli", SECRET.encode(), False)],
                    client_for_tenant=lambda t: client,
                    seen=SeenLinks(),
                )
            ]
        )
        async with serving(app) as url:
            code, out, err = await sso_link(
                "Bob@Example.com", "--tenant", "acme", "--ttl", "60", "--base-url", url,
                "--secret-file", str(secret_file),
            )  # fmt: skip
            assert (code, err) == (0, "")
            link = out.strip()
            code, out, _ = await sso_link(
                "bob@example.com", "--tenant", "acme", "--ttl", "60", "--base-url", url + "/",
                RELAY_LINK_SECRET=SECRET,
            )  # fmt: skip
            assert code == 0
            env_link = out.strip()
            async with aiohttp.ClientSession() as http, http.get(link) as resp:
                assert resp.status == 200
                assert "<h1 id='account'>bob@example.com</h1>" in await resp.text()
    # The file's trailing newline is not part of the secret: both links verify with it.
    for made in (link, env_link):
        split = urlsplit(made)
        query = parse_qs(split.query)
        assert split.path == "/sso/acme/bob@example.com"
        exp = int(query["exp"][0])
        got = verify_sso_link(
            tenant="acme",
            email=unquote(split.path.rsplit("/", 1)[1]),
            exp=query["exp"][0],
            sig=query["sig"][0],
            secret=SECRET.encode(),
            now=exp - 60,
        )
        assert got is LinkCheck.OK


async def test_usage_errors_exit_2(tmp_path: Path) -> None:
    base = ("a@example.com", "--tenant", "acme", "--base-url", "https://relay.example.com")
    code, out, err = await sso_link(*base)
    assert (code, out) == (2, "")
    assert err == (
        "exmail-relay sso-link: error: no link secret: give --config FILE (with [[clients]] "
        "link_secret), or --secret-file FILE or RELAY_LINK_SECRET\n"
    )
    code, _, err = await sso_link("a@example.com", "--tenant", "acme", RELAY_LINK_SECRET="x")
    assert code == 2 and "--base-url" in err
    code, _, err = await sso_link(*base, "--ttl", "0", RELAY_LINK_SECRET="x")
    assert code == 2 and "--ttl" in err
    # Longer than the relay's max_link_ttl (600 s by default): refused, not clamped.
    code, out, err = await sso_link(*base, "--ttl", "601", RELAY_LINK_SECRET="x")
    assert (code, out) == (2, "")
    assert "--ttl 601 is over [gateway] max_link_ttl (600 s" in err
    code, out, _ = await sso_link(*base, "--ttl", "600", RELAY_LINK_SECRET="x")
    assert code == 0 and "sig=" in out
    code, _, err = await sso_link(*base, "--secret-file", str(tmp_path / "missing"))
    assert code == 2 and "cannot read --secret-file" in err
    config = tmp_path / "relay.toml"
    config.write_text(
        '[[tenants]]\nname = "other"\nclient_id = "admin@example.com"\nclient_secret = "k"\n'
    )
    code, _, err = await sso_link(*base, "--config", str(config), RELAY_LINK_SECRET="x")
    assert code == 2 and "no tenant named 'acme'" in err
    assert "Traceback" not in err


CONFIG = """
[[tenants]]
name = "acme"
client_id = "admin@example.com"
client_secret = "k"

[[clients]]
name = "portal"
key = "portal-key-0000000000000001"
scopes = ["sso", "read"]
link_secret = "%s"

[[clients]]
name = "kiosk"
key = "kiosk-key-00000000000000001"
tenants = ["acme"]
scopes = ["sso"]
link_secret = "%s"

[[clients]]
name = "writer"
key = "writer-key-0000000000000001"
scopes = ["read", "write"]
link_secret = "writer-link-secret-0001"
"""


async def test_the_secret_comes_from_the_named_clients_link_secret(
    relay: Running, tmp_path: Path
) -> None:
    config = tmp_path / "relay.toml"
    config.write_text(CONFIG % (PORTAL_LINK_SECRET, KIOSK_LINK_SECRET))
    url = base(relay)
    common = ("carol@example.com", "--tenant", "acme", "--base-url", url, "--config", str(config))
    code, out, err = await sso_link(*common, "--client", "portal")
    assert (code, err) == (0, "")
    async with aiohttp.ClientSession() as http:
        async with http.get(out.strip(), allow_redirects=False) as resp:
            assert resp.status == 302  # the running relay takes the portal's signature
        # --secret-file overrides the configured secret (here: a wrong one, refused)
        other = tmp_path / "other"
        other.write_text("some-other-secret-000001")
        code, out, err = await sso_link(*common, "--client", "portal", "--secret-file", str(other))
        assert code == 0
        async with http.get(out.strip(), allow_redirects=False) as resp:
            assert resp.status == 403
    code, _, err = await sso_link(*common)
    assert code == 2 and "give --client" in err and "portal, kiosk" in err
    code, _, err = await sso_link(*common, "--client", "writer")
    assert code == 2 and "scope sso" in err
    code, _, err = await sso_link(*common, "--client", "nobody")
    assert code == 2 and "no [[clients]] entry named 'nobody'" in err
    # The configuration's max_link_ttl bounds --ttl.
    config.write_text(
        CONFIG % (PORTAL_LINK_SECRET, KIOSK_LINK_SECRET) + "\n[gateway]\nmax_link_ttl = 1200\n"
    )
    code, _, err = await sso_link(*common, "--client", "portal", "--ttl", "1200")
    assert (code, err) == (0, "")
    code, _, err = await sso_link(*common, "--client", "portal", "--ttl", "1201")
    assert code == 2 and "max_link_ttl (1200 s" in err
