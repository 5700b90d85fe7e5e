"""The building blocks of the settings models: durations, secret files, URLs, and the
frozen base every section derives from. No I/O beyond reading a ``*_file`` secret when a
model validator asks for it.
"""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, SecretStr

from relay.core.presence import valid_replica_id

__all__ = [
    "LEASE_MODE_NEEDS_SIGNING",
    "ConfigError",
    "Duration",
    "Section",
    "check_http_url",
    "check_replica_id",
    "check_webhook_secret",
    "parse_duration",
    "read_secret_file",
    "secret_lines",
    "secret_list",
    "unique",
]


class ConfigError(Exception):
    """The configuration is invalid. The message names every bad key and why."""


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: object) -> float:
    """Seconds from a number or a string such as ``"500ms"``, ``"30s"``, ``"5m"``, ``"24h"``."""
    if isinstance(value, bool):
        raise ValueError("expected a duration, got a boolean")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(f"not a duration: {value!r} (use e.g. 30, '30s', '5m', '24h')")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise ValueError(f"expected a duration, got {type(value).__name__}")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


def read_secret_file(path: Path, key: str) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{key}: cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:  # its message quotes a byte of the secret
        raise ValueError(f"{key}: {path} is not UTF-8 text") from None
    value = text.strip()
    if not value:
        raise ValueError(f"{key}: {path} is empty")
    return value


def check_http_url(value: str, key: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{key} must be an http(s) URL with a host")
    return value


class Section(BaseModel):
    """A frozen ``[section]`` model that refuses unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def secret_list(value: object) -> object:
    if isinstance(value, str | SecretStr):
        return [value]
    return value


LEASE_MODE_NEEDS_SIGNING = (
    "sharding.secret: lease mode (the default with [amqp] enabled) needs the deployment "
    "secret that signs the replicas' broker messages: set [sharding] secret or secret_file "
    "to the same random value on every replica, e.g. the output of `openssl rand -base64 "
    '32` (the Helm chart generates one); or set [sharding] mode = "static"'
)


def check_replica_id(replica: str) -> str:
    """``replica`` when it is a DNS label (RFC 1123), as lease mode needs: peers build a
    URL from it (``[gateway] peer_url``); else a :class:`ConfigError` saying what to set."""
    if not valid_replica_id(replica):
        raise ConfigError(
            f"sharding.replica_id: {replica!r} (the host name when unset) is not a DNS "
            "label (lower-case a-z, 0-9 and inner '-', at most 63 characters): "
            "set [sharding] replica_id"
        )
    return replica


def secret_lines(
    given: list[SecretStr], file: Path | None, *, min_length: int, key: str = "secret"
) -> list[SecretStr]:
    """``given`` and every non-empty line of ``file`` (``<key>_file``), each at least
    ``min_length`` characters: the secrets of a key that rotates (first signs)."""
    secrets = list(given)
    if file is not None:
        text = read_secret_file(file, f"{key}_file")
        secrets.extend(SecretStr(line.strip()) for line in text.splitlines() if line.strip())
    for index, value in enumerate(secrets):
        if len(value.get_secret_value()) < min_length:
            raise ValueError(f"{key} #{index + 1} must be at least {min_length} characters")
    return secrets


def unique(values: list[str], section: str, key: str) -> None:
    """Raise naming the first duplicate of ``values`` (``tenants[3].name: duplicate 'x'``)."""
    seen: set[str] = set()
    for index, value in enumerate(values):
        if value in seen:
            raise ValueError(f"{section}[{index}].{key}: duplicate {value!r}")
        seen.add(value)


def check_webhook_secret(value: str, index: int) -> None:
    where = f"secret #{index + 1}"
    if not value.startswith("whsec_"):
        raise ValueError(f"{where} must start with 'whsec_' followed by base64")
    try:
        key = base64.b64decode(value.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{where} is not valid base64 after 'whsec_'") from None
    if not 24 <= len(key) <= 64:
        raise ValueError(f"{where} must decode to 24..64 bytes, got {len(key)}")
