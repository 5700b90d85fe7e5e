"""The ``exmail-relay`` command line: one sub-command per module in :mod:`relay.commands`.

Each command module exposes ``register(subparsers)``, which adds its parser and sets
``handler`` (a ``Callable[[argparse.Namespace], int]``) as a default. This module only
builds the parser, dispatches, and turns the documented user-facing errors into one
clear line on stderr and a non-zero exit code: no tracebacks for user mistakes.
Programming errors are not caught here; they surface with their traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import cast

from relay import __version__

# Order is the order of ``--help``.
COMMAND_MODULES: tuple[str, ...] = (
    "relay.commands.run",
    "relay.commands.demo",
    "relay.commands.emulator",
    "relay.commands.api",
    "relay.commands.sso_url",
    "relay.commands.config_check",
    "relay.commands.deadletters",
    "relay.commands.endpoint",
)

EXIT_USAGE = 2
EXIT_FAILURE = 1


class CommandError(Exception):
    """A command could not do what was asked; the message is shown to the user as is."""

    def __init__(self, message: str, *, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exmail-relay",
        description="Real-time mail and directory events out of Tencent Exmail.",
    )
    parser.add_argument("--version", action="version", version=f"exmail-relay {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue  # a command that is not built yet is simply not offered
        module.register(sub)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions whose message is meant for the user: one line, no traceback."""
    errors: list[type[BaseException]] = [CommandError]
    for module_name, attr in (
        ("relay.config", "ConfigError"),
        ("relay.exmail", "ExmailError"),
        ("relay.journal", "JournalError"),
    ):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:
            continue
        errors.append(getattr(module, attr))
    return tuple(errors)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = cast(Callable[[argparse.Namespace], int], args.handler)
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except _user_errors() as exc:
        print(f"exmail-relay {args.command}: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", EXIT_FAILURE)
