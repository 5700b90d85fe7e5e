"""A relay with one tenant of each Exmail API, for the gateway tests of the second API:
``acme`` (the BizMail OpenApi, as in conftest) and ``orient`` (``api = "api2"``, the
emulator's demo second-API company ``wwdemo0000000001`` on ``example.org``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from relay.app.settings import Settings
from relay.emulator import Emulator
from tests.gateway.conftest import ADMIN, CLIENTS, SECRET, gateway_settings

CORPID = "wwdemo0000000001"
CALLBACK_TOKEN = "orientToken42"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # 43 characters
BOTH_KEY = "both-apis-key-0000000000001"
BOTH_LINK_SECRET = "both-apis-link-secret-01"

BOTH_CLIENT: dict[str, Any] = {
    "name": "both",
    "key": BOTH_KEY,
    "scopes": ["sso", "read", "write", "token"],
    "rate": 1000,
    "burst": 1000,
    "link_secret": BOTH_LINK_SECRET,
}


def api2_tenant(emu: Emulator, name: str = "orient") -> dict[str, Any]:
    return {
        "name": name,
        "api": "api2",
        "corpid": CORPID,
        "api_url": emu.api2_url,
        "contact_secret": "demo-directory-secret",
        "sso_secret": "demo-sso-secret",
        "newmail_secret": "demo-newmail-secret",
        "option_secret": "demo-settings-secret",
        "log_secret": "demo-logs-secret",
        "callback_token": CALLBACK_TOKEN,
        "encoding_aes_key": AES_KEY,
        "request_timeout": 2,
    }


def openapi_tenant(emu: Emulator, name: str = "acme") -> dict[str, Any]:
    return {
        "name": name,
        "client_id": ADMIN,
        "client_secret": SECRET,
        "api_url": emu.api_url,
        "token_url": emu.token_url,
        "login_url": emu.login_url,
        "hold": 0.5,
        "request_timeout": 2,
    }


def both_apis_settings(emu: Emulator, tmp_path: Path, **sections: Any) -> Settings:
    """acme (openapi) and orient (api2), every conftest client plus ``both``."""
    data: dict[str, Any] = {
        # zeta: configured, not enabled (conftest's clients name it)
        "tenants": [
            openapi_tenant(emu),
            api2_tenant(emu),
            zeta_off(emu),
        ],
        "clients": [*CLIENTS, BOTH_CLIENT],
    }
    data.update(sections)
    return gateway_settings(emu, tmp_path, **data)


def zeta_off(emu: Emulator) -> dict[str, Any]:
    """conftest's zeta: configured (its clients name it), not enabled."""
    return {**openapi_tenant(emu, "zeta"), "client_id": "zeta@example.com", "enabled": False}
