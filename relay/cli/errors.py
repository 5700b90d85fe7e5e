"""What a command says when it cannot do what was asked, and the exit codes it uses.

Exit codes: 0 done; 1 the command could not do it (an unreachable service, a journal
that refuses or that another relay holds, a busy port, a failed check); 2 bad input:
bad arguments (argparse) or bad configuration (:class:`relay.app.settings.ConfigError`:
a file that does not parse or validate, bad environment overrides, refused keys).

:class:`CommandError` carries a message meant for the user as is; :mod:`relay.cli.main`
prints it as one line on stderr, with no traceback, and exits with its code.
"""

from __future__ import annotations

__all__ = ["EXIT_FAILURE", "EXIT_USAGE", "CommandError"]

EXIT_USAGE = 2
EXIT_FAILURE = 1


class CommandError(Exception):
    """A command could not do what was asked; the message is shown to the user as is."""

    def __init__(self, message: str, *, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code
