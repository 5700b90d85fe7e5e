"""Bad webhook configuration stops startup with a ConfigError naming the key; the
commands' user errors are one clear line."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from relay.app.loader import load_settings
from relay.app.settings import ConfigError
from relay.cli import CommandError
from relay.cli import main as cli_main
from relay.cli.deadletters import parse_since
from relay.journal import Journal
from tests.support import recorded_sockets
from tests.webhook.conftest import make_secret


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "relay.toml"
    path.write_text(body, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("entry", "key", "reason"),
    [
        ('url = "ftp://x/"\nsecret = "{good}"', "webhooks[0].url", "http(s) URL"),
        ('url = "not a url"\nsecret = "{good}"', "webhooks[0].url", "http(s) URL"),
        ('url = "https://h/"\nsecret = "nope"', "webhooks[0]", "must start with 'whsec_'"),
        ('url = "https://h/"\nsecret = "whsec_%%%"', "webhooks[0]", "not valid base64"),
        ('url = "https://h/"', "webhooks[0]", "secret (or secret_file) is required"),
    ],
)
def test_bad_webhook_config_names_the_key(
    tmp_path: Path, entry: str, key: str, reason: str
) -> None:
    good = make_secret()
    path = write(tmp_path, f'[[webhooks]]\nname = "a"\n{entry.replace("{good}", good)}\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    message = str(info.value)
    assert message.startswith(key)
    assert reason in message
    assert "%%%" not in message
    assert good not in message


def test_parse_since() -> None:
    now = 1_800_000_000.0
    assert parse_since("2h", now=now) == now - 7200
    assert parse_since("90s", now=now) == now - 90
    assert parse_since("2027-01-15T08:00:00Z", now=0) == 1_800_000_000
    assert parse_since("2027-01-15T08:00:00", now=0) == 1_800_000_000  # naive = UTC
    assert parse_since("2027-01-15T10:00:00+02:00", now=0) == 1_800_000_000
    with pytest.raises(CommandError, match="neither ISO 8601 nor a duration"):
        parse_since("yesterday", now=now)


def test_commands_refuse_a_missing_journal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.sqlite3"
    assert cli_main(["deadletters", "list", "--journal", str(missing)]) == 1
    assert cli_main(["endpoint", "enable", "a", "--journal", str(missing)]) == 1
    err = capsys.readouterr().err
    assert err.count(f"journal {missing} does not exist") == 2
    assert not missing.exists()


def test_endpoint_checks_the_configured_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = tmp_path / "j.sqlite3"

    async def disabled() -> str | None:
        async with Journal(journal) as j:
            return await j.disabled("webhook:crm")

    assert asyncio.run(disabled()) is None  # creates the journal
    config = write(
        tmp_path,
        f'[journal]\npath = "{journal}"\n[[webhooks]]\nname = "crm"\nurl = "https://h/"\n'
        f'secret = "{make_secret()}"\n',
    )
    assert cli_main(["endpoint", "disable", "erp", "--config", str(config)]) == 1
    assert "no webhook endpoint named 'erp' (configured: crm)" in capsys.readouterr().err
    # The commands work on the journal alone: they never look up or call the endpoint
    # (an unreachable "https://h/" would make them hang on DNS or a connect).
    with recorded_sockets() as sockets:
        assert cli_main(["endpoint", "disable", "crm", "--config", str(config)]) == 0
        assert "endpoint crm disabled" in capsys.readouterr().out
        assert cli_main(["deadletters", "list", "--config", str(config)]) == 0
        assert capsys.readouterr().out.strip() == "no dead letters"
    assert sockets == []
    assert (asyncio.run(disabled()) or "").startswith("disabled by an operator")
