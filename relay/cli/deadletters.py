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

``--tenant``, ``--type``, ``--since`` and ``--until`` narrow any action further. With
``--relay URL`` (and the admin token in ``$RELAY_ADMIN_TOKEN`` or
``--admin-token-file``) the command uses a running relay's admin API instead of the
file, on every replica at once: ``list`` shows each letter's replica, ``--replica ID``
narrows to one (:mod:`relay.cli.admin_relay`).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from relay.app.loader import load_settings
from relay.app.settings import Settings, parse_duration
from relay.cli.admin_relay import (
    add_admin_relay_arguments,
    admin_call,
    report_missing,
    uses_relay,
)
from relay.cli.errors import EXIT_USAGE, CommandError
from relay.journal import DeadFilter, DeadLetter, Journal

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
    _add_filter_arguments(listing)
    listing.add_argument("--json", action="store_true", help="one JSON array instead of a table")
    listing.add_argument("--limit", type=int, default=1000, help="at most this many (1000)")
    add_admin_relay_arguments(listing)

    replay = actions.add_parser("replay", help="queue dead letters for delivery again")
    add_journal_arguments(replay)
    _add_sink_arguments(replay, required=False)
    replay.add_argument("--id", dest="event_id", metavar="ID", help="only this event id")
    _add_filter_arguments(replay)
    replay.add_argument(
        "--force",
        action="store_true",
        help="replay to a sink the configuration does not have (its rows wait in the journal)",
    )
    add_admin_relay_arguments(replay)

    drop = actions.add_parser("drop", help="delete one sink's dead letters for good")
    add_journal_arguments(drop)
    _add_sink_arguments(drop, required=True)
    drop.add_argument("--id", dest="event_id", metavar="ID", help="only this event id")
    _add_filter_arguments(drop)
    add_admin_relay_arguments(drop)
    parser.set_defaults(handler=run)


def _add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tenant", metavar="NAME", help="only this tenant's events")
    parser.add_argument("--type", metavar="TYPE", help="only this event type")
    for flag, text in (("--since", "since"), ("--until", "before")):
        parser.add_argument(
            flag,
            metavar="TIME",
            help=f"only events created {text} TIME: ISO 8601 (UTC if no offset) or a"
            " duration ago ('2h')",
        )
    parser.add_argument(
        "--replica", metavar="ID", help="with --relay: only this replica (default: every one)"
    )


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


def parse_since(text: str, *, now: float, flag: str = "--since") -> float:
    """Unix time from ISO 8601 (naive = UTC) or a duration ago (``90s``, ``2h``, ``1d``)."""
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CommandError(
            f"{flag}: {text!r} is neither ISO 8601 nor a duration such as '2h'",
            exit_code=EXIT_USAGE,
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


def _filter(args: argparse.Namespace) -> DeadFilter:
    now = time.time()
    times = {
        flag: parse_since(value, now=now, flag="--" + flag) if value else None
        for flag, value in (("since", args.since), ("until", args.until))
    }
    for flag in ("tenant", "type", "event_id"):
        value = getattr(args, flag, None)
        if value is not None and not value.strip():
            raise CommandError(f"--{flag.replace('_', '-')}: empty", exit_code=EXIT_USAGE)
    return DeadFilter(
        sink=_sink_filter(args),
        tenant=args.tenant,
        type=args.type,
        event_id=getattr(args, "event_id", None),
        since=times["since"],
        until=times["until"],
    )


def run(args: argparse.Namespace) -> int:
    limit = getattr(args, "limit", None)
    if limit is not None and limit < 1:
        raise CommandError("--limit: at least 1", exit_code=EXIT_USAGE)
    where = _filter(args)
    if uses_relay(args):
        return _through_relay(args, where)
    if args.replica:
        raise CommandError("--replica goes with --relay", exit_code=EXIT_USAGE)
    path = journal_path(args)
    if args.action == "list":
        letters = asyncio.run(_list(path, where, args.limit))
        rows = [_as_json(letter) for letter in letters]
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            _print_table(rows)
        return 0
    if args.action == "drop":
        assert where.sink is not None  # the parser requires --endpoint or --sink
        dropped, events = asyncio.run(_drop(path, where))
        print(
            f"{dropped} dead letter(s) of {where.sink} dropped, {events} event(s) deleted",
            file=sys.stderr,
        )
        return 0
    configured = None if args.force else _configured(args)
    sink = where.sink
    if sink is not None and configured is not None and sink not in configured:
        raise CommandError(
            f"sink {sink!r} is not configured: replayed, its deliveries would wait in the"
            " journal and count toward max_events (the next start retires them again)."
            " Configure it again first, drop them (deadletters drop), or pass --force"
        )
    count, skipped = asyncio.run(_replay(path, where, configured))
    _say_skipped(skipped)
    print(f"{count} dead letter(s) queued for delivery again", file=sys.stderr)
    return 0


def _say_skipped(skipped: list[str]) -> None:
    for name in skipped:
        print(
            f"skipped the dead letters of {name}, which is not configured"
            f" (replay them with --sink {name} --force, or drop them)",
            file=sys.stderr,
        )


def _through_relay(args: argparse.Namespace, where: DeadFilter) -> int:
    fields = {
        "sink": where.sink,
        "tenant": where.tenant,
        "type": where.type,
        "event_id": where.event_id,
        "since": where.since,
        "until": where.until,
        "replica": args.replica,
    }
    given = {k: v for k, v in fields.items() if v is not None}
    if args.action == "list":
        return _list_through_relay(args, {k: str(v) for k, v in given.items()})
    if args.action == "replay":
        answer = admin_call(args, "POST", "deadletters/replay", body={**given, "force": args.force})
        for part in answer["replicas"]:
            if part.get("ok"):
                _say_skipped([f"{s} (replica {part['replica']})" for s in part["skipped"]])
        print(f"{answer['replayed']} dead letter(s) queued for delivery again", file=sys.stderr)
        return report_missing(answer)
    answer = admin_call(args, "POST", "deadletters/drop", body=given)
    print(
        f"{answer['dropped']} dead letter(s) of {where.sink} dropped,"
        f" {answer['events_deleted']} event(s) deleted",
        file=sys.stderr,
    )
    return report_missing(answer)


def _list_through_relay(args: argparse.Namespace, query: dict[str, str]) -> int:
    """Page through the admin API until ``--limit`` letters or the end."""
    rows: list[dict[str, Any]] = []
    missing = 0
    cursor = None
    while len(rows) < args.limit:
        page = {**query, "limit": str(min(args.limit, 1000))}
        if cursor is not None:
            page["cursor"] = cursor
        answer = admin_call(args, "GET", "deadletters", query=page)
        rows += answer["items"]
        missing = max(missing, report_missing(answer))
        cursor = answer.get("next")
        if cursor is None or (not answer["items"] and not answer["complete"]):
            break
    rows = rows[: args.limit]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print_table(rows)
    return missing


async def _list(path: Path, where: DeadFilter, limit: int) -> list[DeadLetter]:
    async with Journal(path) as journal:
        return await journal.dead_page(where, limit=limit)


async def _drop(path: Path, where: DeadFilter) -> tuple[int, int]:
    async with Journal(path) as journal:
        return await journal.drop_dead(where=where)


async def _replay(
    path: Path, where: DeadFilter, configured: frozenset[str] | None
) -> tuple[int, list[str]]:
    """Replay; with ``configured`` and no sink, sink by sink, skipping (and naming) the
    sinks with dead letters that are not configured."""
    async with Journal(path) as journal:
        if where.sink is not None or configured is None:
            return await journal.replay(where=where), []
        dead = [name for name, stats in (await journal.stats()).sinks.items() if stats.dead]
        count = 0
        for name in sorted(set(dead) & configured):
            count += await journal.replay(where=dataclasses.replace(where, sink=name))
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


def _cell(value: object) -> str:
    return "" if value is None else str(value)


def _print_table(letters: list[dict[str, Any]]) -> None:
    if not letters:
        print("no dead letters")
        return
    columns = ["endpoint", "event_id", "type", "tenant", "attempts", "dead_since", "last_error"]
    if any("replica" in letter for letter in letters):
        columns.insert(0, "replica")
    header = tuple(c.upper().replace("_", " ") for c in columns)
    rows = [
        tuple(_cell(letter.get(c))[: 60 if c == "last_error" else None] for c in columns)
        for letter in letters
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
