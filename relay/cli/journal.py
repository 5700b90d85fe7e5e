"""``exmail-relay journal check|salvage``: look at a journal file, and rescue a damaged one.

``check`` runs SQLite's ``PRAGMA integrity_check`` over the whole file and prints ``ok``
or the problems, then the pending and dead deliveries per sink (when they can be read).
Exit 0 when the file is sound, 1 when it is damaged.

``salvage OUT`` copies every readable event, delivery (state, attempts, next attempt,
last error), checkpoint and sink flag of the journal into a new journal file ``OUT``,
and says how many rows it copied and lost. A damaged page costs only the rows on it.
It never writes the damaged file, and refuses an ``OUT`` that exists.

Both find the journal like ``deadletters`` (``--journal FILE``, or the ``[journal].path``
of ``--config``/``$RELAY_CONFIG``). Run them on a stopped relay's file: the procedure is
in docs/operations.md ("Journal corruption: check and salvage"). ``check --relay URL``
(and the admin token, :mod:`relay.cli.admin_relay`) checks every replica's journal
through the admin API instead; ``salvage`` stays a file command (the relay is stopped).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from relay.cli.admin_relay import add_admin_relay_arguments, admin_call, report_missing, uses_relay
from relay.cli.deadletters import add_journal_arguments, journal_path
from relay.journal import Copied, check_file, salvage_file

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "journal",
        help="check a journal file, or salvage a damaged one",
        description="Check a journal file's integrity, or copy what is readable of a"
        " damaged one into a new file.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = actions.add_parser("check", help="PRAGMA integrity_check, and what each sink owes")
    add_journal_arguments(check)
    add_admin_relay_arguments(check)
    salvage = actions.add_parser(
        "salvage", help="copy every readable row into a new journal file OUT"
    )
    salvage.add_argument("out", metavar="OUT", help="the new journal file (must not exist)")
    add_journal_arguments(salvage)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.action == "check" and uses_relay(args):
        return _check_through_relay(args)
    path = journal_path(args)
    if args.action == "check":
        return _check(path)
    return _salvage_into(path, Path(args.out))


def _check(path: Path) -> int:
    found = check_file(path)
    print(f"journal {path}")
    if found.ok:
        print("integrity: ok")
    else:
        print(f"integrity: DAMAGED ({len(found.problems)} problem(s))")
        for problem in found.problems:
            print(f"  {problem}")
    if found.sinks is None:
        print(f"deliveries: unreadable ({found.sinks_error})")
    elif not found.sinks:
        print("deliveries: nothing pending or dead")
    else:
        for sink, (pending, dead) in sorted(found.sinks.items()):
            print(f"sink {sink}: {pending} pending, {dead} dead")
    if not found.ok:
        print(f"to recover: exmail-relay journal salvage NEW_FILE --journal {path}")
    return 0 if found.ok else 1


def _check_through_relay(args: argparse.Namespace) -> int:
    answer = admin_call(args, "GET", "journal/check")
    for item in answer["items"]:
        print(f"replica {item['replica']}: journal {item['path']}")
        problems = item["problems"]
        print("integrity: ok" if item["ok"] else f"integrity: DAMAGED ({len(problems)} problem(s))")
        for problem in problems:
            print(f"  {problem}")
        if item["sinks"] is None:
            print(f"deliveries: unreadable ({item['sinks_error']})")
        for sink, counts in sorted((item["sinks"] or {}).items()):
            print(f"sink {sink}: {counts['pending']} pending, {counts['dead']} dead")
    missing = report_missing(answer)
    return 0 if answer["ok"] and not missing else 1


def _lost(copied: Copied) -> str:
    return "unknown" if copied.lost is None else str(copied.lost)


def _salvage_into(path: Path, out: Path) -> int:
    done = salvage_file(path, out)
    print(f"salvaged {path} into {out}")
    for name in ("events", "deliveries", "checkpoints", "sinks"):
        copied: Copied = getattr(done, name)
        print(f"{name}: {copied.copied} copied, {_lost(copied)} lost")
    if done.orphans:
        print(f"deliveries of lost events (dropped): {done.orphans}")
    if done.deliveries.lost != 0 and done.unrouted:
        print(
            f"events without any delivery row: {done.unrouted} (their rows were lost, or they"
            " were routed to no sink); they count as delivered and are not sent again"
        )
    print(f"backlog in {out}: {done.backlog} event(s)")
    for sink, count in sorted(done.pending.items()):
        print(f"sink {sink}: {count} pending")
    return 0
