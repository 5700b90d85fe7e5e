"""``[[clients]]`` and ``[gateway]``: validation naming the key, and secrets masked in
``config check``, reprs and errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from relay.app.loader import load_settings
from relay.app.settings import ConfigError, Settings
from tests.ops.test_ops_config_check import check

TENANT = {"name": "acme", "client_id": "admin@example.com", "client_secret": "tenant-secret-1"}
KEY_A = "client-key-aaaaaaaaaaaa-1"
KEY_B = "client-key-bbbbbbbbbbbb-2"
LINK = "link-secret-cccccccccccc-3"


def build(**client: Any) -> Settings:
    return Settings(tenants=[TENANT], clients=[{"name": "portal", **client}])


@pytest.mark.parametrize(
    ("client", "message"),
    [
        ({"scopes": ["read"]}, "key (or key_file) is required"),
        ({"key": "short", "scopes": ["read"]}, "at least 16 characters"),
        ({"key": KEY_A, "scopes": ["admin"]}, "scopes"),
        ({"key": KEY_A, "tenants": ["nope"]}, "unknown tenant(s) ['nope']"),
        ({"key": KEY_A, "rate": 0}, "rate"),
        ({"key": KEY_A, "link_secret": "short"}, "link_secret must be at least 16"),
    ],
)
def test_bad_clients_are_refused_naming_the_key(client: dict[str, Any], message: str) -> None:
    env = {
        "RELAY_TENANTS": json.dumps([TENANT]),
        "RELAY_CLIENTS": json.dumps([{"name": "portal", **client}]),
    }
    with pytest.raises(ConfigError) as info:
        load_settings(environ=env)
    text = str(info.value)
    assert "clients[0]" in text, text
    assert message in text
    assert KEY_A not in text and "short" not in text.replace(message, "")


def test_a_key_shared_by_two_clients_is_refused() -> None:
    with pytest.raises(ValueError, match="share a key"):
        Settings(
            tenants=[TENANT],
            clients=[{"name": "a", "key": KEY_A}, {"name": "b", "key": [KEY_B, KEY_A]}],
        )


def test_key_file_adds_one_key_per_line_and_reprs_hide_them(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"{KEY_B}\n\n{LINK}\n")
    s = build(key=KEY_A, key_file=keys, scopes=["sso", "read"], link_secret=LINK)
    assert [k.get_secret_value() for k in s.clients[0].key] == [KEY_A, KEY_B, LINK]
    for secret in (KEY_A, KEY_B, LINK):
        assert secret not in repr(s) and secret not in str(s.clients[0])


def test_link_secret_file_is_read_and_checked_like_link_secret(tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.write_text(f"{LINK}\n")
    s = build(key=KEY_A, scopes=["sso"], link_secret_file=link)
    secret = s.clients[0].link_secret
    assert secret is not None and secret.get_secret_value() == LINK
    assert LINK not in repr(s)
    with pytest.raises(ValueError, match="give link_secret or link_secret_file, not both"):
        build(key=KEY_A, link_secret=LINK, link_secret_file=link)
    link.write_text("short\n")
    with pytest.raises(ValueError, match="link_secret must be at least 16"):
        build(key=KEY_A, link_secret_file=link)
    with pytest.raises(ValueError, match="link_secret_file: cannot read"):
        build(key=KEY_A, link_secret_file=tmp_path / "missing")


async def test_config_check_masks_client_keys_and_link_secrets(tmp_path: Path) -> None:
    config = tmp_path / "relay.toml"
    config.write_text(
        f"""
[[tenants]]
name = "acme"
client_id = "admin@example.com"
client_secret = "tenant-secret-1"

[[clients]]
name = "portal"
key = ["{KEY_A}", "{KEY_B}"]
scopes = ["sso", "read"]
link_secret = "{LINK}"

[gateway]
tenant_concurrency = 4
"""
    )
    code, out, err = await check(config, "--json")
    assert code == 0, err
    data = json.loads(out[out.index("{") :])
    assert data["clients"][0]["key"] == ["**********", "**********"]
    assert data["clients"][0]["link_secret"] == "**********"
    assert data["gateway"]["tenant_concurrency"] == 4
    for secret in (KEY_A, KEY_B, LINK):
        assert secret not in out + err


def test_clients_from_the_environment(tmp_path: Path) -> None:
    env = {
        "RELAY_TENANTS": json.dumps([TENANT]),
        "RELAY_CLIENTS": json.dumps([{"name": "portal", "key": KEY_A, "scopes": ["read"]}]),
    }
    s = load_settings(environ=env)
    assert s.clients[0].scopes == ["read"] and s.clients[0].tenants == []
    env["RELAY_CLIENTS"] = json.dumps([{"name": "portal", "key": "x"}])
    with pytest.raises(ConfigError, match=r"clients\[0\]"):
        load_settings(environ=env)
