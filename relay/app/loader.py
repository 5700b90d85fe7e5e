"""The loader: the one place that reads the configuration file and the environment.

A TOML file (``--config`` or ``RELAY_CONFIG``) is loaded first; environment variables
``RELAY_<SECTION>__<KEY>`` override it (``RELAY_AMQP__URL``, ``RELAY_HTTP__PORT``; list
sections such as ``RELAY_TENANTS`` take JSON). The merged values are then validated
against :class:`relay.app.settings.Settings`.

:func:`load_settings` reads exactly the environment it is given: ``environ=`` replaces
``os.environ`` for every lookup (``RELAY_CONFIG`` and every override), so a test or a
tool can load a configuration in full isolation from the process it runs in.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsError

from relay.app.settings import ConfigError, Settings

__all__ = ["CONFIG_ENV", "load_settings"]

CONFIG_ENV = "RELAY_CONFIG"


class _EnvironSource(EnvSettingsSource):
    """pydantic-settings' environment source, reading a given mapping, not os.environ."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        if self.case_sensitive:
            return dict(self._environ)
        return {key.lower(): value for key, value in self._environ.items()}


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` on top; nested tables merge key by key."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _env_error(exc: SettingsError) -> str:
    """One line naming the variable whose value could not be parsed (never the value)."""
    match = re.search(r'field "([^"]+)"', str(exc))
    if match is None:
        return "environment: a RELAY_* variable could not be parsed"
    name = f"RELAY_{match.group(1).upper()}"
    return f"environment: {name} must be valid JSON (a list or table, as in the TOML file)"


def _refuse_private_keys(data: Mapping[str, Any], where: str) -> None:
    """Keys starting with ``_`` would reach pydantic-settings' own switches
    (``_env_prefix``, ``_cli_parse_args``, ...) or be dropped silently: refuse them."""
    for key, value in data.items():
        name = f"{where}.{key}" if where else key
        if key.startswith("_"):
            raise ConfigError(f"{name}: not a setting (keys starting with '_' are refused)")
        if isinstance(value, Mapping):
            _refuse_private_keys(value, name)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, Mapping):
                    _refuse_private_keys(item, f"{name}[{index}]")


def _format_errors(error: ValidationError) -> str:
    lines = []
    for item in error.errors(include_url=False, include_input=False):
        location = ""
        for part in item["loc"]:
            if isinstance(part, int):
                location += f"[{part}]"
            else:
                location += ("." if location else "") + str(part)
        message = str(item["msg"]).removeprefix("Value error, ")
        lines.append(f"{location or 'config'}: {message}")
    return "\n".join(lines)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path}: not UTF-8 (byte {exc.object[exc.start]:#04x} at offset"
            f" {exc.start})"
        ) from None
    except RecursionError:
        raise ConfigError(f"config file {path}: nested too deeply to be a configuration") from None


def load_settings(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Load the TOML file (``path`` or ``$RELAY_CONFIG``; none is fine) plus the environment.

    ``environ`` replaces ``os.environ`` for every lookup (tests, tools).
    """
    env = os.environ if environ is None else environ
    chosen = path if path is not None else env.get(CONFIG_ENV) or None
    data = _read_toml(Path(chosen)) if chosen is not None else {}
    _refuse_private_keys(data, "")
    try:
        overrides = _EnvironSource(Settings, env)()
    except SettingsError as exc:
        raise ConfigError(_env_error(exc)) from None
    try:
        return Settings.model_validate(_merge(data, overrides))
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc)) from None
