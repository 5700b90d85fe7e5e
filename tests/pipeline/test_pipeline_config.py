"""Configuration loading: the shipped example, environment overrides, secret files."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.app.loader import load_settings
from relay.app.settings import ConfigError

ROOT = Path(__file__).resolve().parents[2]
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_the_example_configuration_loads(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "relay.example.toml").read_text(encoding="utf-8")
    secrets = {
        "/run/secrets/acme": "interface-key\n",
        "/run/secrets/amqp-url": "amqp://relay:pw@rabbitmq:5672/\n",
        "/run/secrets/oa-webhook": f"{WEBHOOK_SECRET}\n",
    }
    for index, (path, value) in enumerate(secrets.items()):
        local = tmp_path / f"secret{index}"
        local.write_text(value, encoding="utf-8")
        text = text.replace(path, str(local))
    config = tmp_path / "relay.toml"
    config.write_text(text, encoding="utf-8")
    settings = load_settings(config, environ={})
    assert settings.tenant("acme").secret().get_secret_value() == "interface-key"
    assert settings.amqp.url.get_secret_value() == "amqp://relay:pw@rabbitmq:5672/"
    assert [s.get_secret_value() for s in settings.webhooks[0].secret] == [WEBHOOK_SECRET]
    assert settings.journal.retention == 86400.0
    assert settings.webhooks[0].types == ["exmail.mail.*", "exmail.user.*"]
    assert settings.shutdown.timeout == 10.0


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "relay.toml"
    config.write_text('[http]\nport = 8080\n[journal]\nretention = "1h"\n', encoding="utf-8")
    monkeypatch.setenv("RELAY_HTTP__PORT", "9191")
    monkeypatch.setenv("RELAY_CONFIG", str(config))
    settings = load_settings()
    assert settings.http.port == 9191
    assert settings.journal.retention == 3600.0


def test_secrets_never_show_in_reprs_or_errors(tmp_path: Path) -> None:
    config = tmp_path / "relay.toml"
    config.write_text(
        '[[tenants]]\nname = "a"\nclient_id = "admin@a.com"\nclient_secret = "s3cr3t-key"\n'
        '[amqp]\nurl = "amqp://u:amqp-pass@h/"\n',
        encoding="utf-8",
    )
    settings = load_settings(config, environ={})
    shown = repr(settings) + str(settings.model_dump())
    assert "s3cr3t-key" not in shown
    assert "amqp-pass" not in shown
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[tenants]]\nname = "BAD"\nclient_id = "admin@a.com"\nclient_secret = "s3cr3t-key"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(bad, environ={})
    assert "tenants[0].name" in str(caught.value)
    assert "s3cr3t-key" not in str(caught.value)
