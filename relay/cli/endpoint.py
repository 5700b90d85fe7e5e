"""``exmail-relay endpoint enable|disable NAME``: switch a webhook endpoint on or off.

An endpoint that answered ``410 Gone`` is disabled by the relay; its events wait in the
journal. ``enable`` switches it back on and the waiting events go out; ``disable``
pauses it by hand. The state lives in the journal, so it survives restarts.

Like ``deadletters``, this opens the journal file directly, which is safe while a
relay runs (SQLite WAL); the running relay notices within a few seconds. With
``--relay URL`` (and the admin token, :mod:`relay.cli.admin_relay`) it switches the
endpoint on every replica through the admin API instead.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from relay.app.loader import load_settings
from relay.cli.admin_relay import (
    add_admin_relay_arguments,
    admin_call,
    endpoint_path,
    report_missing,
    uses_relay,
)
from relay.cli.deadletters import add_journal_arguments, journal_path, sink_of
from relay.cli.errors import CommandError
from relay.journal import Journal

__all__ = ["register", "run"]

OPERATOR_REASON = "disabled by an operator (exmail-relay endpoint disable)"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "endpoint",
        help="enable or disable a webhook endpoint",
        description="Enable (e.g. after a 410 Gone) or disable a webhook endpoint.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for action, text in (("enable", "deliver to NAME again"), ("disable", "pause NAME")):
        sub = actions.add_parser(action, help=text)
        add_journal_arguments(sub)
        sub.add_argument("name", metavar="NAME", help="the [[webhooks]] name")
        add_admin_relay_arguments(sub)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    sink = sink_of(args.name)
    if uses_relay(args):
        return _through_relay(args, sink.removeprefix("webhook:"))
    path = journal_path(args)
    if args.config or not args.journal:
        _check_configured(args.config, sink)
    enable = args.action == "enable"
    was = asyncio.run(_switch(path, sink, enable))
    state = "enabled" if enable else "disabled"
    before = "enabled" if was is None else f"disabled ({was})"
    print(f"endpoint {args.name} {state} (was {before}); a running relay notices within seconds")
    return 0


def _through_relay(args: argparse.Namespace, name: str) -> int:
    answer = admin_call(args, "POST", endpoint_path(name, args.action))
    state = "enabled" if args.action == "enable" else "disabled"
    for part in answer["replicas"]:
        if part.get("ok"):
            before = "disabled" if part["was_disabled"] else "enabled"
            print(f"endpoint {name} {state} on replica {part['replica']} (was {before})")
    return report_missing(answer)


def _check_configured(config: str | None, sink: str) -> None:
    names = [f"webhook:{hook.name}" for hook in load_settings(config).webhooks]
    if names and sink not in names:
        known = ", ".join(name.removeprefix("webhook:") for name in names)
        raise CommandError(
            f"no webhook endpoint named {sink.removeprefix('webhook:')!r} (configured: {known})"
        )


async def _switch(path: Path, sink: str, enable: bool) -> str | None:
    async with Journal(path) as journal:
        was = await journal.disabled(sink)
        await journal.set_disabled(sink, not enable, None if enable else OPERATOR_REASON)
        return was
