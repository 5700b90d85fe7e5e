"""``exmail-relay directory confirm-held|poll TENANT --relay URL``: an api2 tenant's
directory polls, through a running relay's admin API.

``confirm-held`` commits the listing held for deleting too many members now, as the
poll that confirms it would (docs/protocol.md, "Mass deletions are held");
``--since`` (the ``directory.held.since`` of ``/status.json``) confirms only that hold.
``poll`` lists the directory now and prints the poll's outcome. Both call ``POST
/admin/v1/tenants/{tenant}/directory/...`` on any replica, which forwards the call to
the one polling the tenant: a held listing lives in that replica's memory, so there is
no journal-file form of these commands; ``--relay`` is required.

Exit codes (as :mod:`relay.cli.admin_relay`): 0 done (``poll``: the poll worked, held or
not); 1 the relay refused (nothing held, not polled, a takeover: its problem in one line),
cannot be reached, or the poll failed (its error on stderr); 2 bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from relay.cli.admin_relay import add_admin_relay_arguments, admin_call, uses_relay
from relay.cli.errors import EXIT_USAGE, CommandError

__all__ = ["register", "run"]

WORKED = frozenset({"changed", "unchanged", "baseline", "held"})
"""Poll outcomes that are no failure (exmail_relay_directory_polls_total)."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "directory",
        help="confirm an api2 tenant's held directory listing, or poll it now (--relay)",
        description="An api2 tenant's directory polls, through a running relay's admin API.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    confirm = actions.add_parser(
        "confirm-held", help="commit the listing held for too many deletions, now"
    )
    confirm.add_argument("tenant", metavar="TENANT", help="the [[tenants]] name")
    confirm.add_argument(
        "--since",
        type=float,
        metavar="SECONDS",
        help="confirm only the hold held since then (directory.held.since of /status.json)",
    )
    add_admin_relay_arguments(confirm)
    poll = actions.add_parser("poll", help="list the directory now; print the outcome")
    poll.add_argument("tenant", metavar="TENANT", help="the [[tenants]] name")
    add_admin_relay_arguments(poll)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if not uses_relay(args):
        raise CommandError(
            f"directory {args.action} needs --relay URL: a held listing lives in the memory"
            " of the replica that polls the tenant",
            exit_code=EXIT_USAGE,
        )
    path = f"tenants/{quote(args.tenant, safe='')}/directory/"
    if args.action == "confirm-held":
        body = {} if args.since is None else {"since": args.since}
        answer = admin_call(args, "POST", path + "confirm-held", body=body)
        done = answer["confirmed"]
        print(
            f"tenant {answer['tenant']}: held listing confirmed on replica {answer['replica']}:"
            f" {done['deleted']} deleted, {done['added']} added, {done['updated']} updated"
            f" ({done['members']} members before, {done['listed']} after); {answer['events']}"
            " event(s) committed"
        )
        return 0
    answer = admin_call(args, "POST", path + "poll")
    outcome = answer["outcome"]
    print(f"tenant {answer['tenant']}: polled on replica {answer['replica']}: {outcome}")
    directory = answer.get("directory") or {}
    if (held := directory.get("held")) is not None:
        print(held_line(answer["tenant"], held))
    if outcome not in WORKED:
        print(f"the poll failed: {directory.get('last_error')}", file=sys.stderr)
        return 1
    return 0


def held_line(tenant: str, held: dict[str, Any]) -> str:
    """A held listing's counts, and the command that confirms it."""
    since = datetime.fromtimestamp(held["since"], UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    needed = held["confirm_polls"]
    polls = f"{held['polls']} of {needed}" if needed else f"{held['polls']} (never by polls)"
    return (
        f"held: would delete {held['deleted']} of {held['members']} members; polls {polls};"
        f" since {since}; to confirm it: exmail-relay directory confirm-held {tenant}"
        f" --since {held['since']!r} --relay URL"
    )
