"""Logging: JSON lines off a TTY, readable text on one, and secret redaction.

Configured once by the command (the edge) with :func:`configure`. Records carry
structured fields through ``extra=`` (``tenant``, ``event_id``, ``sink``, ...), which
both formatters print. :class:`RedactFilter` scrubs tokens, secrets and
``Authorization`` values from every record before any handler sees it.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal, TextIO
from urllib.parse import urlsplit

__all__ = ["JsonFormatter", "RedactFilter", "TextFormatter", "configure", "redact_url", "scrub"]

_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)

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


def _scrub_value(value: object, secrets: Iterable[str]) -> object:
    if isinstance(value, str):
        return scrub(value, secrets)
    if isinstance(value, list | tuple):
        return type(value)(_scrub_value(v, secrets) for v in value)
    if isinstance(value, dict):
        return {k: _scrub_value(v, secrets) for k, v in value.items()}
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


class RedactFilter(logging.Filter):
    """Removes known secret values and secret-shaped substrings from every record."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if len(s) >= 4)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(record.getMessage(), self.secrets)
        record.args = None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD and isinstance(value, str | list | tuple | dict):
                setattr(record, key, _scrub_value(value, self.secrets))
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = scrub(
                logging.Formatter().formatException(record.exc_info), self.secrets
            )
            record.exc_info = None
        return True


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update(_fields(record))
        if record.exc_text:
            data["exception"] = record.exc_text
        elif record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        extra = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        line = f"{stamp} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if extra:
            line += f"  [{extra}]"
        if record.exc_text:
            line += "\n" + record.exc_text
        elif record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure(
    *,
    format: Literal["auto", "json", "text"] = "auto",
    level: str = "info",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> None:
    """Route the ``relay`` loggers (and warnings from libraries) to ``stream``."""
    out = stream or sys.stderr
    chosen = format
    if chosen == "auto":
        chosen = "text" if out.isatty() else "json"
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter() if chosen == "json" else TextFormatter())
    handler.addFilter(RedactFilter(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("relay").setLevel(level.upper())
