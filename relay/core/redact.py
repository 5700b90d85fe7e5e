"""Redaction: secrets and secret-shaped text masked before anything is shown.

Pure string functions used wherever text may leave the process: log records
(:mod:`relay.ops.logs`), error text a sink keeps as ``last_error``, ``config check``
output, and the URLs shown on the status page. :func:`scrub` masks given secrets and
anything shaped like one (tokens, ``Authorization`` values, AMQP passwords, webhook
keys and signatures); :func:`redact_url` keeps only scheme, host, port and path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

__all__ = ["redact_url", "scrub", "scrub_value"]

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?(?:bearer |basic )?)[^\s\"',;&]+", r"\1***"),
        (r"(?i)((?:access_token|client_secret|secret|password|ticket)=)[^\s&\"']+", r"\1***"),
        (
            r"(?i)(\"(?:access_token|client_secret|secret|password|ticket)\"\s*:\s*\")[^\"]+",
            r"\1***",
        ),
        (r"(amqps?://[^:/@\s]+:)[^@\s]+@", r"\1***@"),
        (r"whsec_[A-Za-z0-9+/=]+", "whsec_***"),
        (r"(v1,)[A-Za-z0-9+/=]{20,}", r"\1***"),
    )
)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every known secret and every secret-shaped substring masked."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, "***")
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def scrub_value(value: object, secrets: Iterable[str]) -> object:
    if isinstance(value, str):
        return scrub(value, secrets)
    if isinstance(value, list | tuple):
        return type(value)(scrub_value(v, secrets) for v in value)
    if isinstance(value, dict):
        return {k: scrub_value(v, secrets) for k, v in value.items()}
    return value


def redact_url(url: str, *, keep_user: bool = False) -> str:
    """``scheme://[user:***@]host[:port]/path``: no password, query or fragment.

    Safe for logs, errors and the status page; ``keep_user`` shows who connects (AMQP).
    """
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is not None:
        host = f"{host}:{port}"
    user = f"{parts.username}:***@" if keep_user and parts.username else ""
    return f"{parts.scheme}://{user}{host}{parts.path or '/'}"
