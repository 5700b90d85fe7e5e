"""``relay.cli``: the ``exmail-relay`` command line, one module per command.

:func:`main` (in :mod:`relay.cli.main`) is the console script's entry point;
:mod:`relay.cli.errors` holds the error and exit codes every command shares.
"""

from relay.cli.errors import EXIT_FAILURE, EXIT_USAGE, CommandError
from relay.cli.main import main

__all__ = ["EXIT_FAILURE", "EXIT_USAGE", "CommandError", "main"]
