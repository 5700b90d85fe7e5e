"""The checks seeds are made of: addresses, and typed keys named by their place.

Shared by ``_seed`` (the first API's companies) and ``_api2seed`` (second-API tenants):
each check raises ``EmulatorSeedError`` naming where the problem is
(``companies[0].users[2].alias: ...``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ._errors import EmulatorSeedError

__all__ = ["_email", "_fail", "_int", "_keys", "_str", "_strs", "is_email", "normalize_email"]

_EMAIL = re.compile(r"^[a-z0-9][a-z0-9._+\-]{0,63}@[a-z0-9](?:[a-z0-9\-]{0,62}\.)+[a-z]{2,63}$")


def normalize_email(value: str) -> str:
    """Addresses compare case-insensitively and the documents' examples carry stray spaces."""
    return value.strip().lower()


def is_email(value: str) -> bool:
    return _EMAIL.match(value) is not None


def _fail(where: str, problem: str) -> EmulatorSeedError:
    return EmulatorSeedError(f"{where}: {problem}")


def _keys(obj: Any, where: str, allowed: Sequence[str], required: Sequence[str]) -> None:
    if not isinstance(obj, Mapping):
        raise _fail(where, f"expected a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - set(allowed))
    if unknown:
        raise _fail(where, f"unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    missing = [k for k in required if k not in obj]
    if missing:
        raise _fail(where, f"missing required key(s) {missing}")


def _str(obj: Mapping[str, Any], key: str, where: str, default: str = "") -> str:
    value = obj.get(key, default)
    if not isinstance(value, str):
        raise _fail(f"{where}.{key}", f"expected a string, got {type(value).__name__}")
    return value


def _int(obj: Mapping[str, Any], key: str, where: str, default: int, allowed: range) -> int:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
        raise _fail(f"{where}.{key}", f"expected an integer in [{allowed.start}, {allowed.stop})")
    return value


def _strs(obj: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = obj.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(f"{where}.{key}", "expected a list of strings")
    return tuple(value)


def _email(value: str, where: str, domains: Sequence[str] | None = None) -> str:
    email = normalize_email(value)
    if not is_email(email):
        raise _fail(where, f"{value!r} is not an email address")
    if domains is not None and email.split("@", 1)[1] not in domains:
        raise _fail(where, f"{value!r} is not in the company's domains {list(domains)}")
    return email
