"""Tenants choose their API: ``api = "openapi"`` (the default, unchanged) or ``"api2"``
with a corpid, per-application secrets and the callback's token and key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from relay.app.api2_settings import API2_URL
from relay.app.loader import load_settings
from relay.app.settings import DEFAULT_API_URL, ConfigError, TenantSettings
from relay.cli.run import secrets_of

TOKEN = "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo"
KEY = "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt"
API2 = f"""
[[tenants]]
name = "newco"
api = "api2"
corpid = "ww1436e0e65a779aee"
contact_secret = "contact-secret-value"
callback_token = "{TOKEN}"
"""


def test_openapi_is_the_default_and_unchanged(tmp_path: Path) -> None:
    settings = load_settings(
        environ={
            "RELAY_TENANTS": '[{"name": "acme", "client_id": "admin@acme", '
            '"client_secret": "s3cret-value"}]'
        }
    )
    tenant = settings.tenant("acme")
    assert tenant.api == "openapi" and tenant.api_url == DEFAULT_API_URL
    assert tenant.credentials()[0] == "admin@acme"


def test_an_api2_tenant_with_secret_files(tmp_path: Path) -> None:
    key_file = tmp_path / "aeskey"
    key_file.write_text(KEY + "\n")
    sso = tmp_path / "sso"
    sso.write_text("sso-secret-value\n")
    settings = load_settings(
        _write(
            tmp_path, API2 + f'encoding_aes_key_file = "{key_file}"\nsso_secret_file = "{sso}"\n'
        ),
        environ={},
    )
    tenant = settings.tenant("newco")
    assert tenant.api == "api2" and tenant.api_url == API2_URL
    assert tenant.encoding_aes_key is not None
    assert tenant.encoding_aes_key.get_secret_value() == KEY
    assert tenant.api2_secret("sso") is not None
    assert tenant.api2_secret("log") is None
    # Secrets never in the repr; every one is redacted from the logs.
    text = repr(settings) + str(settings)
    for secret in (KEY, TOKEN, "sso-secret-value", "contact-secret-value"):
        assert secret not in text
        assert secret in set(secrets_of(settings))
    # An api2 tenant has no BizMail credentials: the commands that need them say so.
    with pytest.raises(ConfigError, match='uses api = "api2"'):
        tenant.credentials()


def _write(tmp_path: Path, text: str) -> Path:
    config = tmp_path / "relay.toml"
    config.write_text(text, encoding="utf-8")
    return config


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (f'encoding_aes_key = "{KEY[:-1]}"', "encoding_aes_key must be exactly 43"),
        (f'encoding_aes_key = "{KEY[:-1]}+"', "encoding_aes_key must be exactly 43"),
        (f'encoding_aes_key = "{KEY}"\nclient_id = "admin@x"', "client_id: only for api"),
        (f'encoding_aes_key = "{KEY}"\nsso_secret = "a"\nsso_secret_file = "/x"',
         "give sso_secret or sso_secret_file, not both"),
        ("", "callback_token and encoding_aes_key"),
        (f'encoding_aes_key = "{KEY}"\nsso_secret_file = "/nonexistent/sso"',
         "sso_secret_file: cannot read"),
        (f'encoding_aes_key = "{KEY}"\ndirectory_interval = "500ms"',
         "directory_interval must be 0 (off) or at least 1 s"),
    ],
)  # fmt: skip
def test_api2_errors_name_the_key(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(_write(tmp_path, API2 + extra + "\n"), environ={})
    assert message in str(caught.value)
    assert str(caught.value).startswith("tenants[0]")
    assert TOKEN not in str(caught.value) and KEY[:-1] not in str(caught.value)


def test_bad_token_and_missing_corpid(tmp_path: Path) -> None:
    bad = API2.replace(TOKEN, "not-a-token!") + f'encoding_aes_key = "{KEY}"\n'
    with pytest.raises(ConfigError, match="callback_token must be 1 to 32 letters or digits"):
        load_settings(_write(tmp_path, bad), environ={})
    long = API2.replace(TOKEN, "a" * 33) + f'encoding_aes_key = "{KEY}"\n'
    with pytest.raises(ConfigError, match="callback_token must be"):
        load_settings(_write(tmp_path, long), environ={})
    nocorp = API2.replace('corpid = "ww1436e0e65a779aee"\n', "") + f'encoding_aes_key = "{KEY}"\n'
    with pytest.raises(ConfigError, match="corpid is required"):
        load_settings(_write(tmp_path, nocorp), environ={})


def test_api2_keys_on_an_openapi_tenant_are_refused() -> None:
    with pytest.raises(ValueError, match='corpid: only for api = "api2"'):
        TenantSettings(name="acme", client_id="admin@acme", client_secret="x" * 8, corpid="ww1")
    with pytest.raises(ValueError, match='directory_interval: only for api = "api2"'):
        TenantSettings(
            name="acme", client_id="admin@acme", client_secret="x" * 8, directory_interval=60
        )
    with pytest.raises(ValueError, match="client_id is required"):
        TenantSettings(name="acme")


def test_config_check_exits_2_on_a_bad_key(tmp_path: Path) -> None:
    config = _write(tmp_path, API2 + 'encoding_aes_key = "short"\n')
    done = subprocess.run(
        [sys.executable, "-m", "relay", "config", "check", "--config", str(config)],
        capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "tenants[0]: encoding_aes_key must be exactly 43" in done.stderr
    assert TOKEN not in done.stderr + done.stdout
    good = _write(tmp_path, API2 + f'encoding_aes_key = "{KEY}"\n')
    done = subprocess.run(
        [sys.executable, "-m", "relay", "config", "check", "--config", str(good)],
        capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for secret in (TOKEN, KEY, "contact-secret-value"):
        assert secret not in done.stdout + done.stderr


def test_config_check_warns_when_the_callback_url_is_not_served(tmp_path: Path) -> None:
    config = _write(tmp_path, API2 + f'encoding_aes_key = "{KEY}"\n[http]\nenabled = false\n')
    done = subprocess.run(
        [sys.executable, "-m", "relay", "config", "check", "--config", str(config)],
        capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "callback URL of api2 tenant(s) ['newco'] is not served" in done.stderr
