"""What an admin API call asks for: dead-letter filters, paging cursors, JSON shapes.

Where it sits: the pure part of :mod:`relay.ops.admin`. The query string of ``GET
/admin/v1/deadletters`` and the JSON body of ``POST .../replay`` and ``.../drop`` name
the same filter fields (:data:`FILTER_FIELDS`), parsed here into a
:class:`~relay.journal.DeadFilter`. Bad input is a :class:`~relay.gateway.problems.Problem`
(400) naming the field.

Paging across replicas: each replica's journal pages by its own ``(seq, sink)`` order,
so a page's cursor maps each replica still to be read to the last ``(seq, sink)`` it
gave; it travels as opaque base64url JSON (``next`` in the answer, ``cursor`` in the
query). A replica missing from a cursor has nothing more; :data:`START` is "from the
beginning" (a replica that could not be reached keeps its place for the next page).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from relay.core.presence import valid_replica_id
from relay.gateway.problems import Problem
from relay.journal import DeadFilter, DeadLetter

__all__ = [
    "DEFAULT_LIMIT",
    "FILTER_FIELDS",
    "MAX_LIMIT",
    "START",
    "Cursor",
    "decode_cursor",
    "encode_cursor",
    "iso",
    "letter_json",
    "parse_filter",
    "parse_limit",
    "parse_replica",
    "parse_time",
]

WEBHOOK_PREFIX = "webhook:"
FILTER_FIELDS = ("sink", "endpoint", "tenant", "type", "event_id", "since", "until")
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
START: tuple[int, str] = (-1, "")
Cursor = dict[str, tuple[int, str]]
_MAX_TEXT = 512


def _bad(field: str, detail: str) -> Problem:
    return Problem(400, "invalid-request", "Invalid request", f"{field}: {detail}")


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# Unix seconds a time filter may take: 1970 to the year 5138. NaN, infinities and huge
# numbers are refused: SQLite binds NaN as NULL, which the filter reads as "no bound".
_MAX_SECONDS: Final = 1e11


def parse_time(field: str, value: object) -> float | None:
    """ISO 8601 (naive = UTC) or Unix seconds, or ``None`` when absent; a finite time."""
    moment = _parse_time(field, value)
    if moment is not None and not (math.isfinite(moment) and 0 <= moment <= _MAX_SECONDS):
        raise _bad(field, "expected a time between 1970 and the year 5000")
    return moment


def _parse_time(field: str, value: object) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise _bad(field, "expected a time")
    if isinstance(value, int | float):
        try:
            return float(value)
        except OverflowError:
            raise _bad(field, "expected a time between 1970 and the year 5000") from None
    if not isinstance(value, str):
        raise _bad(field, "expected ISO 8601 or Unix seconds")
    try:
        return float(value)
    except (ValueError, OverflowError):
        pass
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise _bad(field, f"{value[:40]!r} is neither ISO 8601 nor Unix seconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _text(field: str, value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > _MAX_TEXT or not value.strip():
        raise _bad(field, f"expected a non-empty string of at most {_MAX_TEXT} characters")
    return value


def parse_filter(values: Mapping[str, object]) -> DeadFilter:
    """The filter named by ``values`` (a query string or a JSON body)."""
    sink = _text("sink", values.get("sink"))
    endpoint = _text("endpoint", values.get("endpoint"))
    if sink is not None and endpoint is not None:
        raise _bad("endpoint", "give endpoint or sink, not both")
    if endpoint is not None:
        name = endpoint.removeprefix(WEBHOOK_PREFIX)
        if not name:
            raise _bad("endpoint", "empty endpoint name")
        sink = WEBHOOK_PREFIX + name
    since = parse_time("since", values.get("since"))
    until = parse_time("until", values.get("until"))
    if since is not None and until is not None and until <= since:
        raise _bad("until", "must be after since")
    return DeadFilter(
        sink=sink,
        tenant=_text("tenant", values.get("tenant")),
        type=_text("type", values.get("type")),
        event_id=_text("event_id", values.get("event_id")),
        since=since,
        until=until,
    )


def parse_limit(value: str | None) -> int:
    if value is None or value == "":
        return DEFAULT_LIMIT
    try:
        limit = int(value)
    except ValueError:
        raise _bad("limit", "expected an integer") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise _bad("limit", f"expected 1..{MAX_LIMIT}")
    return limit


def parse_replica(value: object) -> str | None:
    """A replica id (a DNS label, as presence carries), or ``None`` for every replica."""
    if value is None or value == "":
        return None
    if not valid_replica_id(value):
        raise _bad("replica", "not a replica id (a DNS label)")
    return str(value)


def encode_cursor(cursor: Cursor) -> str | None:
    if not cursor:
        return None
    data = json.dumps({r: [seq, sink] for r, (seq, sink) in sorted(cursor.items())})
    return base64.urlsafe_b64encode(data.encode()).decode().rstrip("=")


def decode_cursor(text: str | None) -> Cursor | None:
    """The cursor of ``text``; ``None`` (no cursor: the first page) when absent."""
    if text is None or text == "":
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        data: Any = json.loads(raw)
    except (ValueError, binascii.Error):
        raise _bad("cursor", "not a cursor this API gave") from None
    if not isinstance(data, dict):
        raise _bad("cursor", "not a cursor this API gave")
    cursor: Cursor = {}
    for replica, place in data.items():
        ok = (
            valid_replica_id(replica)
            and isinstance(place, list)
            and len(place) == 2
            and isinstance(place[0], int)
            and not isinstance(place[0], bool)
            and START[0] <= place[0] < 2**63  # a journal sequence (SQLite INTEGER) or START
            and isinstance(place[1], str)
        )
        if not ok:
            raise _bad("cursor", "not a cursor this API gave")
        cursor[replica] = (place[0], place[1])
    return cursor


def letter_json(letter: DeadLetter, replica: str) -> dict[str, Any]:
    return {
        "replica": replica,
        "endpoint": letter.sink.removeprefix(WEBHOOK_PREFIX),
        "sink": letter.sink,
        "event_id": letter.event_id,
        "tenant": letter.tenant,
        "type": letter.type,
        "created": iso(letter.created),
        "dead_since": iso(letter.updated),
        "attempts": letter.attempts,
        "last_error": letter.last_error,
    }
