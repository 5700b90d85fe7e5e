"""Rotating ``[http] auth_token`` and ``admin_token`` without a refused client: several
tokens in ``auth_token_file``/``admin_token_file``, every one accepted over real HTTP,
audit lines naming the token used, the files read again when they change (a removed
token refused, a broken file leaving the last good set in force with one warning and a
``config_warnings`` entry), the first token the one sent to peers (a rollout between two
replicas), configuration errors naming the key, and no token in any log, repr or output.
Real parts: relays built from settings, the emulator, a loopback webhook receiver."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from relay.app.settings import HttpSettings
from relay.app.wiring import Running
from relay.cli.main import main as cli_main
from relay.emulator import Emulator
from relay.ops.admin import fingerprint
from tests.gateway.test_gateway_forwarding import free_port_on_both
from tests.ops.test_ops_admin import admin_settings
from tests.support import eventually, running_relay
from tests.webhook.conftest import Receiver, receiver

__all__ = ["receiver"]

ADMIN_OLD = "admin-old-0123456789abcdef"
ADMIN_NEW = "admin-new-fedcba9876543210"
ADMIN_NEXT = "admin-next-00112233445566"
OPS_OLD = "ops-old-token-000000000001"
OPS_NEW = "ops-new-token-000000000002"
EVERY_TOKEN = (ADMIN_OLD, ADMIN_NEW, ADMIN_NEXT, OPS_OLD, OPS_NEW)


def write(path: Path, text: str) -> None:
    """As the kubelet swaps a Secret: a new file renamed over the old one."""
    fresh = path.with_name(path.name + ".new")
    fresh.write_text(text)
    os.replace(fresh, path)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def base(run: Running) -> str:
    assert run.server is not None
    return run.server.url.rstrip("/")


async def admin_status(http: aiohttp.ClientSession, run: Running, token: str) -> int:
    async with http.get(f"{base(run)}/admin/v1/deadletters", headers=bearer(token)) as resp:
        return resp.status


async def ops_status(http: aiohttp.ClientSession, run: Running, token: str) -> int:
    async with http.get(f"{base(run)}/status.json", headers=bearer(token)) as resp:
        return resp.status


async def disable(http: aiohttp.ClientSession, run: Running, token: str) -> Any:
    url = f"{base(run)}/admin/v1/endpoints/good/disable"
    async with http.post(url, headers=bearer(token)) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


def audited(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "relay.audit"]


@pytest.fixture
async def relay(
    emulator: Emulator, tmp_path: Path, receiver: Receiver
) -> AsyncIterator[tuple[Running, Path, Path]]:
    admin_file, ops_file = tmp_path / "admin-tokens", tmp_path / "ops-tokens"
    write(admin_file, f"# step 2 of a rotation\nci-2026 {ADMIN_NEW}\n\n{ADMIN_OLD}\n")
    write(ops_file, f"{OPS_OLD}\n{OPS_NEW}\n")
    http = {"port": 0, "admin_token_file": str(admin_file), "auth_token_file": str(ops_file)}
    async with running_relay(admin_settings(emulator, tmp_path, receiver, http=http)) as run:
        yield run, admin_file, ops_file


async def test_every_listed_token_is_accepted_and_the_audit_names_it(
    relay: tuple[Running, Path, Path],
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    run, _, _ = relay
    caplog.set_level(logging.DEBUG, logger="relay")
    for token in (ADMIN_NEW, ADMIN_OLD):
        assert await admin_status(http, run, token) == 200
    for token in (ADMIN_NEXT, OPS_OLD, ADMIN_NEW + "x", ADMIN_NEW[:-1], f"ci-2026 {ADMIN_NEW}"):
        assert await admin_status(http, run, token) == 403, token
    for token in (OPS_OLD, OPS_NEW):
        assert await ops_status(http, run, token) == 200
    for token in (ADMIN_NEW, OPS_NEW[:-1], ""):
        assert await ops_status(http, run, token) == 401
    # The audit line names the token: its name, or the fingerprint of an unnamed one.
    await disable(http, run, ADMIN_NEW)
    await disable(http, run, ADMIN_OLD)
    actors = list(dict.fromkeys(r.actor for r in audited(caplog)))  # type: ignore[attr-defined]
    assert actors == ["admin:ci-2026", fingerprint(ADMIN_OLD)]
    # The command line reads the relay's own file: its first token, past the comment.
    argv = ["deadletters", "list", "--relay", base(run), "--admin-token-file", str(relay[1])]
    assert await asyncio.to_thread(cli_main, argv) == 0
    # No token anywhere: logs, status, metrics, the settings' and the relay's reprs.
    seen = [caplog.text, *(repr(vars(r)) for r in caplog.records), repr(run)]
    for path in ("status.json", "metrics", ""):
        async with http.get(f"{base(run)}/{path}", headers=bearer(OPS_NEW)) as resp:
            seen.append(await resp.text())
    http_settings = HttpSettings(admin_token_file=relay[1], auth_token_file=relay[2])
    seen += [
        repr(http_settings),
        str(http_settings.model_dump()),
        repr(http_settings.tokens("admin_token")),
    ]
    assert not [t for t in EVERY_TOKEN for text in seen if t in text]


async def test_a_changed_file_rotates_live_and_a_broken_one_keeps_the_last_good_set(
    relay: tuple[Running, Path, Path],
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    run, admin_file, ops_file = relay
    caplog.set_level(logging.INFO, logger="relay")
    # Step 3 of the rotation, and on to the next one: no restart.
    write(admin_file, f"ci-2027 {ADMIN_NEXT}\n")
    write(ops_file, f"{OPS_NEW}\n")

    async def rotated() -> bool:
        return (
            await admin_status(http, run, ADMIN_NEXT) == 200
            and await ops_status(http, run, OPS_NEW) == 200
            and await ops_status(http, run, OPS_OLD) == 401
        )

    await eventually(rotated, seconds=10, what="the rewritten token files in force")
    for token in (ADMIN_NEW, ADMIN_OLD):
        assert await admin_status(http, run, token) == 403
    await disable(http, run, ADMIN_NEXT)
    assert audited(caplog)[-1].actor == "admin:ci-2027"  # type: ignore[attr-defined]
    # A file emptied of tokens, one gone: the last good sets stay, one warning each.
    write(admin_file, "# every token removed by mistake\n")
    ops_file.unlink()

    async def warnings() -> list[str]:
        async with http.get(f"{base(run)}/status.json", headers=bearer(OPS_NEW)) as resp:
            assert resp.status == 200
            return list((await resp.json()).get("config_warnings", []))

    shown = await eventually(lambda: _two(warnings), seconds=10, what="two config warnings")
    assert "http.admin_token_file" in shown[0] and "holds no token" in shown[0]
    assert "http.auth_token_file" in shown[1] and "cannot read it" in shown[1]
    assert "still accepting the 1 token (ci-2027) read before" in shown[0]
    assert await admin_status(http, run, ADMIN_NEXT) == 200
    assert await ops_status(http, run, OPS_NEW) == 200
    logged = [
        r for r in caplog.records if r.name == "relay.ops.tokens" and r.levelname == "WARNING"
    ]
    assert sorted(r.key for r in logged) == ["http.admin_token_file", "http.auth_token_file"]  # type: ignore[attr-defined]
    # Mended: taken again, the warnings gone.
    write(admin_file, f"ci-2027 {ADMIN_NEXT}\n{ADMIN_OLD}\n")
    write(ops_file, f"{OPS_NEW}\n")

    async def mended() -> bool:
        return await warnings() == [] and await admin_status(http, run, ADMIN_OLD) == 200

    await eventually(mended, seconds=10, what="the mended files taken, no warning")
    seen = [caplog.text, *(repr(vars(r)) for r in caplog.records), *shown]
    assert not [t for t in EVERY_TOKEN for text in seen if t in text]


async def _two(warnings: Any) -> list[str] | None:
    found: list[str] = await warnings()
    return sorted(found) if len(found) == 2 else None


async def test_the_first_token_is_the_one_sent_to_peers_during_a_rollout(
    emulator: Emulator,
    tmp_path: Path,
    receiver: Receiver,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="relay.audit")
    port = free_port_on_both()
    files = {i: tmp_path / f"admin-tokens-{i}" for i in (0, 1)}
    write(files[0], f"ci {ADMIN_NEW}\nold {ADMIN_OLD}\n")  # step 2 reached replica 0
    write(files[1], f"old {ADMIN_OLD}\nci {ADMIN_NEW}\n")  # replica 1 is still at step 1

    def replica(i: int) -> Any:
        (tmp_path / str(i)).mkdir()
        return admin_settings(
            emulator,
            tmp_path / str(i),
            receiver,
            sharding={"count": 2, "index": i},
            http={"host": f"127.0.0.1{i}", "port": port, "admin_token_file": str(files[i])},
            gateway={"peer_url": f"http://127.0.0.1{{index}}:{port}", "forward_timeout": 5},
        )

    async def complete(run: Running, token: str) -> tuple[bool, list[str]]:
        url = f"{base(run)}/admin/v1/deadletters"
        async with http.get(url, headers=bearer(token)) as resp:
            body = await resp.json()
        return body["complete"], [p.get("error", "") for p in body["replicas"]]

    async with running_relay(replica(0)) as zero, running_relay(replica(1)) as one:
        # Mid-rollout each replica sends its own first token, and the other accepts it.
        assert (await complete(zero, ADMIN_NEW))[0] is True
        assert (await complete(one, ADMIN_OLD))[0] is True
        body = await disable(http, zero, ADMIN_OLD)
        assert body["unreachable"] == []
        on_one = [r for r in audited(caplog) if r.replica == "1"]  # type: ignore[attr-defined]
        assert [(r.actor, r.via) for r in on_one] == [("admin:old", "0")]  # type: ignore[attr-defined]
        # Replica 1 never got step 1 (only the old token): replica 0's calls, with the new
        # token first, are refused there; replica 1's own, with the old one, still pass.
        write(files[1], f"old {ADMIN_OLD}\n")

        async def refused() -> bool:
            done, errors = await complete(zero, ADMIN_NEW)
            return not done and "answered 403" in " ".join(errors)

        await eventually(refused, seconds=10, what="replica 1 refusing replica 0's new token")
        assert (await complete(one, ADMIN_OLD))[0] is True
        # Moving the old token back to the top of replica 0's file mends it, live.
        write(files[0], f"old {ADMIN_OLD}\nci {ADMIN_NEW}\n")

        async def mended() -> bool:
            return (await complete(zero, ADMIN_NEW))[0]

        await eventually(mended, seconds=10, what="replica 0 sending the old token again")


def test_a_file_without_a_token_stops_the_start_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tokens = tmp_path / "admin-tokens"
    tokens.write_text(f"# {ADMIN_OLD} was removed\n\n")
    config = tmp_path / "relay.toml"
    config.write_text(f'[http]\nport = 0\nadmin_token_file = "{tokens}"\n')
    for command in ("run", "config"):
        argv = [command, "--config", str(config)]
        if command == "config":
            argv.insert(1, "check")
        assert cli_main(argv) == 2
        err = capsys.readouterr().err
        assert f"http: admin_token_file: {tokens}: holds no token" in err, err
        assert ADMIN_OLD not in err
    tokens.write_text(f"ci {ADMIN_NEW}\nshort-token\n")
    assert cli_main(["config", "check", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "admin_token_file" in err and "line 2: a token must be at least 16 characters" in err
    assert "short-token" not in err and ADMIN_NEW not in err
    # A good file: the check shows neither token; the first one is `admin_token`.
    tokens.write_text(f"ci {ADMIN_NEW}\n{ADMIN_OLD}\n")
    assert cli_main(["config", "check", "--config", str(config), "--json"]) == 0
    out = capsys.readouterr().out
    assert ADMIN_NEW not in out and ADMIN_OLD not in out and "**" in out
    settings = HttpSettings(admin_token_file=tokens)
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == ADMIN_NEW


def test_configurations_from_before_rotation_read_as_before(tmp_path: Path) -> None:
    # A short auth_token (never had a minimum), inline or alone in its file; an inline
    # admin_token; a one-line file with a trailing newline.
    held = tmp_path / "auth"
    held.write_text("tok-abc\n")
    old = HttpSettings(auth_token="tok-abcdef-123", admin_token=ADMIN_OLD)
    assert old.tokens("auth_token") is not None
    assert old.tokens("auth_token").values() == ("tok-abcdef-123",)  # type: ignore[union-attr]
    assert old.tokens("admin_token").values() == (ADMIN_OLD,)  # type: ignore[union-attr]
    from_file = HttpSettings(auth_token_file=held)
    assert from_file.auth_token is not None
    assert from_file.auth_token.get_secret_value() == "tok-abc"
    with pytest.raises(ValueError, match="admin_token must be at least 16 characters"):
        HttpSettings(admin_token="short")
    assert HttpSettings().tokens("admin_token") is None
