"""``exmail-relay deadletters list|replay``: inspect and re-queue dead letters.

A dead letter is a webhook delivery whose retry schedule is spent. ``list`` shows them
(a table, or ``--json``); ``replay`` makes them pending again with a fresh schedule,
optionally only for one endpoint, one event id, or events since a time.

The command opens the journal file directly (``--journal FILE``, or the
``[journal].path`` of ``--config``/``$RELAY_CONFIG``). SQLite's WAL mode makes that
safe while a relay runs on the same file: the two connections take turns on writes
(``busy_timeout``). A running relay does not get a signal from this process; its idle
drainers look at the journal every couple of seconds and pick the rows up then.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from relay.app.loader import load_settings
from relay.app.settings import parse_duration
from relay.cli.errors import CommandError
from relay.journal import DeadLetter, Journal

__all__ = ["add_journal_arguments", "journal_path", "parse_since", "register", "run", "sink_of"]

WEBHOOK_PREFIX = "webhook:"


def add_journal_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config`` and ``--journal``, shared with :mod:`relay.cli.endpoint`."""
    parser.add_argument("--config", metavar="FILE", help="TOML file (default: $RELAY_CONFIG)")
    parser.add_argument(
        "--journal", metavar="FILE", help="the journal file (default: [journal].path of the config)"
    )


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "deadletters",
        help="list or replay webhook dead letters",
        description="List or replay deliveries whose retry schedule is spent.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="list dead letters")
    add_journal_arguments(listing)
    listing.add_argument("--endpoint", metavar="NAME", help="only this webhook endpoint")
    listing.add_argument("--json", action="store_true", help="one JSON array instead of a table")
    listing.add_argument("--limit", type=int, default=1000, help="at most this many (1000)")

    replay = actions.add_parser("replay", help="queue dead letters for delivery again")
    add_journal_arguments(replay)
    replay.add_argument("--endpoint", metavar="NAME", help="only this webhook endpoint")
    which = replay.add_mutually_exclusive_group()
    which.add_argument("--id", dest="event_id", metavar="ID", help="only this event id")
    which.add_argument(
        "--since",
        metavar="TIME",
        help="only events since TIME: ISO 8601 (UTC if no offset) or a duration ago ('2h')",
    )
    parser.set_defaults(handler=run)


def journal_path(args: argparse.Namespace) -> Path:
    """The journal file named by ``--journal`` or the configuration; it must exist."""
    if getattr(args, "journal", None):
        path = Path(args.journal)
    else:
        path = load_settings(getattr(args, "config", None)).journal.path
    if not path.is_file():
        raise CommandError(f"journal {path} does not exist (give --journal or --config)")
    return path


def sink_of(endpoint: str) -> str:
    """``NAME`` or ``webhook:NAME`` -> the sink name ``webhook:NAME``."""
    name = endpoint.removeprefix(WEBHOOK_PREFIX)
    if not name:
        raise CommandError("--endpoint: empty endpoint name")
    return WEBHOOK_PREFIX + name


def parse_since(text: str, *, now: float) -> float:
    """Unix time from ISO 8601 (naive = UTC) or a duration ago (``90s``, ``2h``, ``1d``)."""
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CommandError(
            f"--since: {text!r} is neither ISO 8601 nor a duration such as '2h'"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def run(args: argparse.Namespace) -> int:
    path = journal_path(args)
    sink = sink_of(args.endpoint) if args.endpoint else None
    if args.action == "list":
        letters = asyncio.run(_list(path, sink, args.limit))
        if args.json:
            print(json.dumps([_as_json(letter) for letter in letters], indent=2))
        else:
            _print_table(letters)
        return 0
    since = parse_since(args.since, now=time.time()) if args.since else None
    count = asyncio.run(_replay(path, sink, args.event_id, since))
    print(f"{count} dead letter(s) queued for delivery again", file=sys.stderr)
    return 0


async def _list(path: Path, sink: str | None, limit: int) -> list[DeadLetter]:
    async with Journal(path) as journal:
        return await journal.dead_letters(sink, limit=limit)


async def _replay(path: Path, sink: str | None, event_id: str | None, since: float | None) -> int:
    async with Journal(path) as journal:
        return await journal.replay(sink=sink, event_id=event_id, since=since)


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _as_json(letter: DeadLetter) -> dict[str, Any]:
    return {
        "endpoint": letter.sink.removeprefix(WEBHOOK_PREFIX),
        "sink": letter.sink,
        "event_id": letter.event_id,
        "tenant": letter.tenant,
        "type": letter.type,
        "created": _iso(letter.created),
        "dead_since": _iso(letter.updated),
        "attempts": letter.attempts,
        "last_error": letter.last_error,
    }


def _print_table(letters: list[DeadLetter]) -> None:
    if not letters:
        print("no dead letters")
        return
    header = ("ENDPOINT", "EVENT ID", "TYPE", "TENANT", "ATTEMPTS", "DEAD SINCE", "LAST ERROR")
    rows = [
        (
            letter.sink.removeprefix(WEBHOOK_PREFIX),
            letter.event_id,
            letter.type,
            letter.tenant,
            str(letter.attempts),
            _iso(letter.updated),
            (letter.last_error or "")[:60],
        )
        for letter in letters
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
