"""``exmail-relay config check``: precise problems, masked output, connection checks."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from relay.emulator import Emulator
from tests.ops.conftest import ADMIN, KEY
from tests.support import AMQP_URL

ROOT = Path(__file__).resolve().parents[2]


async def check(
    config: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "relay",
        "config",
        "check",
        "--config",
        str(config),
        *args,
        cwd=ROOT,
        env={**clean, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 40)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


GOOD = f"""
[[tenants]]
name = "acme"
client_id = "{ADMIN}"
client_secret = "tenant-secret-771"

[amqp]
enabled = true
url = "amqp://guest:amqp-secret-882@127.0.0.1:5672/"

[sharding]
secret = "sharding-secret-4417-abcdef"

[http]
auth_token = "http-token-993"
"""

STATIC = '[sharding]\nmode = "static"\n'

BAD_CASES = {
    "lease-without-secret": (
        "[amqp]\nenabled = true\n",
        ["sharding.secret: lease mode (the default with [amqp] enabled) needs the deployment"],
    ),
    "replica-id-not-a-dns-label": (
        '[sharding]\nreplica_id = "127.0.0.1:80/#"\n',
        ["error: sharding.replica_id: String should match pattern"],
    ),
    "bad-name": (
        '[[tenants]]\nname = "Bad Name"\nclient_id = "abc"\nclient_secret = "x"\n',
        ["error: tenants[0].name: String should match pattern"],
    ),
    "no-secret": (
        '[[tenants]]\nname = "acme"\nclient_id = "abc"\n',
        ["error: tenants[0]: client_secret (or client_secret_file) is required"],
    ),
    "amqp-scheme": (
        '[amqp]\nurl = "http://x/"\n',
        ["error: amqp: url must start with amqp:// or amqps://"],
    ),
    "port-and-key": (
        "[http]\nport = 70000\nbogus = 1\n",
        [
            "error: http.port: Input should be less than or equal to 65535",
            "error: http.bogus: Extra inputs are not permitted",
        ],
    ),
    "toml": ("[http\n", ["invalid TOML"]),
    "secret-file": (
        '[[tenants]]\nname = "acme"\nclient_id = "abc"\nclient_secret_file = "/nonexistent/s"\n',
        ["error: tenants[0]: client_secret_file: cannot read /nonexistent/s"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
async def test_each_invalid_case_has_a_precise_message(tmp_path: Path, case: str) -> None:
    text, expected = BAD_CASES[case]
    config = tmp_path / "relay.toml"
    config.write_text(text)
    code, out, err = await check(config)
    assert code == 2  # bad configuration is bad input: exit 2, like a bad argument
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == len(expected), err
    for line, want in zip(lines, expected, strict=True):
        assert want in line, (line, want)
    assert "Traceback" not in err


async def test_missing_file(tmp_path: Path) -> None:
    code, _, err = await check(tmp_path / "nope.toml")
    assert code == 2 and "does not exist" in err


async def test_environment_overrides_and_secrets_are_masked(tmp_path: Path) -> None:
    config = tmp_path / "relay.toml"
    config.write_text(GOOD)
    code, out, err = await check(config, "--json", env={"RELAY_HTTP__PORT": "9191"})
    assert code == 0, err
    data = json.loads(out)
    assert data["http"]["port"] == 9191
    assert data["amqp"]["url"] == "amqp://guest:***@127.0.0.1:5672/"
    assert data["tenants"][0]["client_secret"] == "***"
    for secret in (
        "tenant-secret-771",
        "amqp-secret-882",
        "http-token-993",
        "sharding-secret-4417-abcdef",
    ):
        assert secret not in out + err
    code, toml_out, _ = await check(config)
    assert code == 0 and "[[tenants]]" in toml_out and 'name = "acme"' in toml_out
    assert "tenant-secret-771" not in toml_out


async def test_environment_problem_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "relay.toml"
    config.write_text(GOOD)
    code, _, err = await check(config, env={"RELAY_LOG__LEVEL": "loud"})
    assert code == 2
    assert err.strip().startswith("error: log.level:")


@pytest.mark.rabbitmq  # the relay it starts connects to the broker
async def test_connect_reports_each_result(tmp_path: Path) -> None:
    broker = urlsplit(AMQP_URL)
    closed = AMQP_URL.replace(broker.netloc, f"{broker.username}:{broker.password}@127.0.0.1:1")
    shown = f"amqp://{broker.username}:***@{broker.hostname}:{broker.port}{broker.path}"
    async with Emulator(port=0, hold=0.5) as emu:
        config = tmp_path / "relay.toml"
        config.write_text(
            f"""
[[tenants]]
name = "acme"
client_id = "{ADMIN}"
client_secret = "{KEY}"
token_url = "{emu.token_url}"
api_url = "{emu.api_url}"

[[tenants]]
name = "wrong"
client_id = "other@example.com"
client_secret = "not-the-key-55"
token_url = "{emu.token_url}"
api_url = "{emu.api_url}"

[amqp]
enabled = true
url = "{AMQP_URL}"

[sharding]
mode = "static"
"""
        )
        code, _, err = await check(config, "--connect")
        assert code == 1, err
        assert "ok: tenant acme: token from" in err
        assert "FAILED: tenant wrong: token from" in err
        assert f"ok: amqp: connect to {shown}" in err
        assert "not-the-key-55" not in err and KEY not in err

        good_only = config.read_text().split('[[tenants]]\nname = "wrong"')[0]
        config.write_text(good_only + f'\n[amqp]\nenabled = true\nurl = "{closed}"\n' + STATIC)
        code, _, err = await check(config, "--connect")
        assert code == 1
        assert "FAILED: amqp: connect to" in err and "ok: tenant acme" in err

        config.write_text(good_only + f'\n[amqp]\nenabled = true\nurl = "{AMQP_URL}"\n' + STATIC)
        code, _, err = await check(config, "--connect")
        assert code == 0, err
        assert "all connection checks passed" in err


async def test_a_short_secret_does_not_mask_its_letter_everywhere(tmp_path: Path) -> None:
    """Masking each occurrence of a one-letter secret told which letter it was."""
    config = tmp_path / "relay.toml"
    config.write_text(
        '[[tenants]]\nname = "acme"\nclient_id = "admin@acme.example.com"\nclient_secret = "a"\n'
        '[[tenants]]\nname = "beta"\nclient_id = "beta-key-0123456789"\n'
        'client_secret = "beta-key-0123456789"\n'
    )
    code, out, err = await check(config, "--json")
    assert code == 0, err
    tenants = json.loads(out)["tenants"]
    assert tenants[0]["name"] == "acme"  # the letter "a" is left alone
    assert tenants[0]["client_id"] == "admin@acme.example.com"
    assert tenants[0]["client_secret"] == "***"
    assert tenants[1]["client_id"] == "***"  # a secret pasted into another key is masked
    assert "beta-key-0123456789" not in out
