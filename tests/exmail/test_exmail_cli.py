"""The ``api`` and ``sso-url`` commands as subprocesses against a running emulator."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import aiohttp

from relay.emulator import Emulator
from tests.exmail.conftest import ADMIN, KEY

ROOT = Path(__file__).resolve().parents[2]


def _env(emulator: Emulator, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env.update(
        RELAY_CLIENT_ID=ADMIN,
        RELAY_CLIENT_SECRET=KEY,
        RELAY_API_URL=emulator.api_url,
        RELAY_TOKEN_URL=emulator.token_url,
        RELAY_LOGIN_URL=emulator.login_url,
    )
    env.update(extra)
    return env


async def _run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "relay",
        *args,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


WARNING = "invalidates the token of any running relay for that account"


async def test_api_read_prints_json(emulator: Emulator) -> None:
    code, out, err = await _run(_env(emulator), "api", "user/get", "Alias=bob@example.com")
    assert code == 0
    assert err.count("\n") == 1 and WARNING in err
    assert json.loads(out)["Alias"] == "bob@example.com"


async def test_own_token_warning_is_one_line_and_true(emulator: Emulator) -> None:
    """A running relay's token stops working when the command fetches its own; the
    command says so once, even when it had to fetch twice."""
    async with aiohttp.ClientSession() as session:
        data = {"grant_type": "client_credentials", "client_id": ADMIN, "client_secret": KEY}
        async with session.post(emulator.token_url, data=data) as resp:
            relays_token = (await resp.json())["access_token"]
        fault = {"kind": "invalid_token", "count": 1, "path": "/openapi/user/get"}
        async with session.post(emulator.control_url + "faults", json=fault) as resp:
            assert resp.status == 200
        code, out, err = await _run(_env(emulator), "api", "user/get", "Alias=bob@example.com")
        assert code == 0 and json.loads(out)["Alias"] == "bob@example.com"
        assert err == (
            f"exmail-relay api: warning: fetched an access token of its own for {ADMIN}; "
            f"this {WARNING} (its listener must fetch a new one)\n"
        )
        async with session.get(emulator.control_url + "state") as resp:
            assert (await resp.json())["requests"]["/cgi-bin/token"] == 3  # relay + 2 of its own
        async with session.post(
            emulator.api_url + "user/get",
            data={"Alias": "bob@example.com"},
            headers={"Authorization": f"Bearer {relays_token}"},
        ) as resp:
            assert (await resp.json())["errcode"] == "1200"  # the warning told the truth


async def test_api_repeated_keys_become_lists(emulator: Emulator) -> None:
    code, out, _ = await _run(
        _env(emulator), "api", "user/check", "email=bob@example.com", "email=free@example.com"
    )
    assert code == 0
    assert [e["Email"] for e in json.loads(out)["List"]] == ["bob@example.com", "free@example.com"]


async def test_api_write_with_empty_body(emulator: Emulator) -> None:
    code, out, _ = await _run(_env(emulator), "api", "party/sync", "Action=2", "DstPath=CliMade")
    assert (code, json.loads(out)) == (0, {})
    code, out, _ = await _run(_env(emulator), "api", "party/list", "PartyPath=")
    assert "CliMade" in [v["Value"] for v in json.loads(out)["List"]]


async def test_api_error_is_one_line_exit_1(emulator: Emulator) -> None:
    code, out, err = await _run(_env(emulator), "api", "user/get", "Alias=ghost@example.com")
    assert code == 1
    assert out == ""
    warning, error = err.strip().splitlines()  # a token was fetched: the warning, then the error
    assert WARNING in warning
    assert error.startswith("exmail-relay api: error: user/get: errcode")


async def test_api_usage_errors_exit_2(emulator: Emulator) -> None:
    code, _, err = await _run(_env(emulator), "api", "user/get", "no-equals-sign")
    assert code == 2
    assert "key=value" in err
    env = _env(emulator)
    del env["RELAY_CLIENT_SECRET"]
    code, _, err = await _run(env, "api", "user/get", "Alias=bob@example.com")
    assert code == 2
    assert "no credentials" in err


async def test_bad_secret_never_printed(emulator: Emulator) -> None:
    env = _env(emulator, RELAY_CLIENT_SECRET="env-secret-xyz")
    code, out, err = await _run(env, "api", "user/get", "Alias=bob@example.com")
    assert code == 1
    assert "invalid_client" in err and WARNING not in err  # no token, nothing invalidated
    assert "env-secret-xyz" not in out + err


async def test_flags_override_environment(emulator: Emulator, tmp_path: Path) -> None:
    secret_file = tmp_path / "key"
    secret_file.write_text(KEY + "\n")
    env = _env(emulator, RELAY_CLIENT_SECRET="wrong")
    code, out, _ = await _run(
        env,
        "api",
        "--client-secret-file",
        str(secret_file),
        "--auth-method",
        "basic",
        "mail/newcount",
        "Alias=bob@example.com",
    )
    assert code == 0
    assert json.loads(out)["Alias"] == "bob@example.com"


async def test_config_file_tenant(emulator: Emulator, tmp_path: Path) -> None:
    config = tmp_path / "relay.toml"
    config.write_text(
        "[[tenants]]\n"
        'name = "acme"\n'
        f'client_id = "{ADMIN}"\n'
        f'client_secret = "{KEY}"\n'
        f'api_url = "{emulator.api_url}"\n'
        f'token_url = "{emulator.token_url}"\n'
        f'login_url = "{emulator.login_url}"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    code, out, err = await _run(
        env, "api", "--config", str(config), "--tenant", "acme", "party/list", "PartyPath="
    )
    assert code == 0, err
    assert json.loads(out)["Count"] == 3
    code, _, err = await _run(env, "api", "--config", str(config), "--tenant", "nope", "party/list")
    assert code != 0
    assert "nope" in err


async def test_sso_url_logs_in(emulator: Emulator) -> None:
    code, out, err = await _run(_env(emulator), "sso-url", "bob@example.com")
    assert code == 0
    assert err.startswith("exmail-relay sso-url: warning:") and err.count("\n") == 1
    url = out.strip()
    assert url.startswith(emulator.login_url + "?")
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 200
        assert "bob@example.com" in await resp.text()


async def test_unreachable_server_is_one_clear_line(emulator: Emulator) -> None:
    import socket

    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = _env(emulator, RELAY_TOKEN_URL=f"http://127.0.0.1:{port}/cgi-bin/token")
    code, out, err = await _run(env, "api", "user/get", "Alias=bob@example.com")
    assert code == 1
    assert out == ""
    assert err.startswith(f"exmail-relay api: error: token: cannot connect to 127.0.0.1:{port}")
    assert "Traceback" not in err
    assert KEY not in err
