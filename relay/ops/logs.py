"""Logging: JSON lines off a TTY, readable text on one, and secret redaction.

Configured once by the command (the edge) with :func:`configure`. Records carry
structured fields through ``extra=`` (``tenant``, ``event_id``, ``sink``, ...), which
both formatters print. :class:`RedactFilter` scrubs tokens, secrets and
``Authorization`` values from every record before any handler sees it.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from relay.core.redact import redact_url, scrub, scrub_value

__all__ = [
    "JsonFormatter",
    "RedactFilter",
    "TextFormatter",
    "configure",
    "redact_also",
    "redact_url",
    "scrub",
]

_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


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
                setattr(record, key, scrub_value(value, self.secrets))
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = scrub(
                logging.Formatter().formatException(record.exc_info), self.secrets
            )
            record.exc_info = None
        return True


def redact_also(secrets: Iterable[str]) -> None:
    """Teach the installed redaction filters secrets read after :func:`configure` (a
    token file read again, :mod:`relay.ops.token_file`)."""
    for handler in logging.getLogger().handlers:
        for found in handler.filters:
            if isinstance(found, RedactFilter):
                known = set(found.secrets)
                found.secrets += tuple(s for s in secrets if len(s) >= 4 and s not in known)


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
