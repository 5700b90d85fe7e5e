"""``exmail-relay deadletters list|replay|drop``: inspect, re-queue and delete dead letters.

A dead letter is a webhook delivery whose retry schedule is spent, or a pending delivery
of a sink the configuration no longer has, retired at start (its ``last_error`` says
``sink "NAME" is no longer configured``). ``list`` shows them (a table, or ``--json``);
``replay`` makes them pending again with a fresh schedule, optionally only for one
endpoint (``--endpoint NAME``) or sink (``--sink amqp``, ``--sink webhook:NAME``), one
event id, or events since a time; ``drop`` deletes one sink's dead letters for good.

``replay`` does not recreate orphans: when the configuration is at hand (``--config``,
or ``$RELAY_CONFIG`` without ``--journal``) it refuses a sink that is not configured
unless ``--force``, and a replay of every sink skips the unconfigured ones.

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
from relay.app.settings import Settings, parse_duration
from relay.cli.errors import CommandError
from relay.journal import DeadLetter, Journal

__all__ = [
    "add_journal_arguments",
    "configured_sinks",
    "journal_path",
    "parse_since",
    "register",
    "run",
    "sink_of",
]

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
        help="list, replay or drop dead letters",
        description="List, replay or drop deliveries whose retry schedule is spent, and"
        " those of sinks no longer configured (retired at start).",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="list dead letters")
    add_journal_arguments(listing)
    _add_sink_arguments(listing, required=False)
    listing.add_argument("--json", action="store_true", help="one JSON array instead of a table")
    listing.add_argument("--limit", type=int, default=1000, help="at most this many (1000)")

    replay = actions.add_parser("replay", help="queue dead letters for delivery again")
    add_journal_arguments(replay)
    _add_sink_arguments(replay, required=False)
    which = replay.add_mutually_exclusive_group()
    which.add_argument("--id", dest="event_id", metavar="ID", help="only this event id")
    which.add_argument(
        "--since",
        metavar="TIME",
        help="only events since TIME: ISO 8601 (UTC if no offset) or a duration ago ('2h')",
    )
    replay.add_argument(
        "--force",
        action="store_true",
        help="replay to a sink the configuration does not have (its rows wait in the journal)",
    )

    drop = actions.add_parser("drop", help="delete one sink's dead letters for good")
    add_journal_arguments(drop)
    _add_sink_arguments(drop, required=True)
    drop.add_argument("--id", dest="event_id", metavar="ID", help="only this event id")
    parser.set_defaults(handler=run)


def _add_sink_arguments(parser: argparse.ArgumentParser, *, required: bool) -> None:
    which = parser.add_mutually_exclusive_group(required=required)
    which.add_argument("--endpoint", metavar="NAME", help="only this webhook endpoint")
    which.add_argument(
        "--sink", metavar="SINK", help="only this sink: amqp, console or webhook:NAME"
    )


def configured_sinks(settings: Settings) -> frozenset[str]:
    """The sinks a relay with ``settings`` runs (and so drains): what is not among them
    has its pending deliveries retired to dead letters at start."""
    names = {WEBHOOK_PREFIX + hook.name for hook in settings.webhooks if hook.enabled}
    if settings.amqp.enabled:
        names.add("amqp")
    if settings.console.enabled:
        names.add("console")
    return frozenset(names)


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


def _sink_filter(args: argparse.Namespace) -> str | None:
    if args.endpoint:
        return sink_of(args.endpoint)
    if args.sink:
        if not args.sink.strip():
            raise CommandError("--sink: empty sink name")
        return str(args.sink)
    return None


def _configured(args: argparse.Namespace) -> frozenset[str] | None:
    """The configured sinks, when the configuration is at hand (as ``endpoint`` checks)."""
    if args.config or not args.journal:
        return configured_sinks(load_settings(args.config))
    return None


def run(args: argparse.Namespace) -> int:
    path = journal_path(args)
    sink = _sink_filter(args)
    if args.action == "list":
        letters = asyncio.run(_list(path, sink, args.limit))
        if args.json:
            print(json.dumps([_as_json(letter) for letter in letters], indent=2))
        else:
            _print_table(letters)
        return 0
    if args.action == "drop":
        assert sink is not None  # the parser requires --endpoint or --sink
        dropped, events = asyncio.run(_drop(path, sink, args.event_id))
        print(
            f"{dropped} dead letter(s) of {sink} dropped, {events} event(s) deleted",
            file=sys.stderr,
        )
        return 0
    configured = None if args.force else _configured(args)
    if sink is not None and configured is not None and sink not in configured:
        raise CommandError(
            f"sink {sink!r} is not configured: replayed, its deliveries would wait in the"
            " journal and count toward max_events (the next start retires them again)."
            " Configure it again first, drop them (deadletters drop), or pass --force"
        )
    since = parse_since(args.since, now=time.time()) if args.since else None
    count, skipped = asyncio.run(_replay(path, sink, args.event_id, since, configured))
    for name in skipped:
        print(
            f"skipped the dead letters of {name}, which is not configured"
            f" (replay them with --sink {name} --force, or drop them)",
            file=sys.stderr,
        )
    print(f"{count} dead letter(s) queued for delivery again", file=sys.stderr)
    return 0


async def _list(path: Path, sink: str | None, limit: int) -> list[DeadLetter]:
    async with Journal(path) as journal:
        return await journal.dead_letters(sink, limit=limit)


async def _drop(path: Path, sink: str, event_id: str | None) -> tuple[int, int]:
    async with Journal(path) as journal:
        return await journal.drop_dead(sink, event_id=event_id)


async def _replay(
    path: Path,
    sink: str | None,
    event_id: str | None,
    since: float | None,
    configured: frozenset[str] | None,
) -> tuple[int, list[str]]:
    """Replay; with ``configured`` and no ``sink``, sink by sink, skipping (and naming)
    the sinks with dead letters that are not configured."""
    async with Journal(path) as journal:
        if sink is not None or configured is None:
            return await journal.replay(sink=sink, event_id=event_id, since=since), []
        dead = [name for name, stats in (await journal.stats()).sinks.items() if stats.dead]
        count = 0
        for name in sorted(set(dead) & configured):
            count += await journal.replay(sink=name, event_id=event_id, since=since)
        return count, sorted(set(dead) - configured)


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
