"""The building blocks of the settings models: durations, secret files, URLs, and the
frozen base every section derives from. No I/O beyond reading a ``*_file`` secret when a
model validator asks for it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, SecretStr

__all__ = [
    "ConfigError",
    "Duration",
    "Section",
    "check_http_url",
    "parse_duration",
    "read_secret_file",
    "secret_list",
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
