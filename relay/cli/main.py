"""The ``exmail-relay`` command line: the parser, the dispatch and the user-facing errors.

Each command is one module of :mod:`relay.cli` exposing ``register(subparsers)``, which
adds its parser and sets ``handler`` (a ``Callable[[argparse.Namespace], int]``) as a
default. The modules are imported here by name, so a missing one is an import error at
start, never a command silently left out of ``--help``. This module turns the
documented user-facing errors into one clear line on stderr and a non-zero exit code:
no tracebacks for user mistakes. Programming errors are not caught here; they surface
with their traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import cast

from relay import __version__
from relay.app.settings import ConfigError
from relay.cli import (
    api,
    config_check,
    deadletters,
    demo,
    directory,
    emulator,
    endpoint,
    journal,
    run,
    sso_link,
    sso_url,
)
from relay.cli.errors import EXIT_FAILURE, EXIT_USAGE, CommandError
from relay.exmail import ExmailError
from relay.journal import JournalError

__all__ = ["COMMANDS", "build_parser", "main"]

# Order is the order of ``--help``.
COMMANDS: tuple[ModuleType, ...] = (
    run,
    demo,
    emulator,
    api,
    sso_url,
    sso_link,
    config_check,
    deadletters,
    endpoint,
    journal,
    directory,
)

# Exceptions whose message is meant for the user: one line, no traceback.
USER_ERRORS: tuple[type[Exception], ...] = (CommandError, ConfigError, ExmailError, JournalError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exmail-relay",
        description="Real-time mail and directory events out of Tencent Exmail.",
    )
    parser.add_argument("--version", action="version", version=f"exmail-relay {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = cast(Callable[[argparse.Namespace], int], args.handler)
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except USER_ERRORS as exc:
        print(f"exmail-relay {args.command}: error: {exc}", file=sys.stderr)
        # Bad configuration is bad input, like a bad argument: exit 2 (see errors.py).
        default = EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FAILURE
        return int(getattr(exc, "exit_code", default))
