"""``exmail-relay endpoint enable|disable NAME``: switch a webhook endpoint on or off.

An endpoint that answered ``410 Gone`` is disabled by the relay; its events wait in the
journal. ``enable`` switches it back on and the waiting events go out; ``disable``
pauses it by hand. The state lives in the journal, so it survives restarts.

Like ``deadletters``, this opens the journal file directly, which is safe while a
relay runs (SQLite WAL); the running relay notices within a few seconds.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from relay.app.loader import load_settings
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
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    path = journal_path(args)
    sink = sink_of(args.name)
    if args.config or not args.journal:
        _check_configured(args.config, sink)
    enable = args.action == "enable"
    was = asyncio.run(_switch(path, sink, enable))
    state = "enabled" if enable else "disabled"
    before = "enabled" if was is None else f"disabled ({was})"
    print(f"endpoint {args.name} {state} (was {before}); a running relay notices within seconds")
    return 0


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
