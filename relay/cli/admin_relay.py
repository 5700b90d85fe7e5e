"""``--relay URL``: ``deadletters``, ``endpoint`` and ``journal check`` through a running
relay's admin API (``/admin/v1/``) instead of the local journal file.

In Kubernetes the journal files live in the replicas' volumes, so the file commands
need a ``kubectl exec`` into the right pod (in lease mode, whichever holds the events).
With ``--relay`` the command calls any replica's ops port and that replica gathers from,
or forwards to, the others (docs/operations.md, "The admin API").

The token is read here, at the edge: from ``--admin-token-file FILE`` (its first token,
read as the relay reads ``[http] admin_token_file``: ``#`` comments and ``NAME TOKEN``
lines understood, so the relay's own file serves) or the environment variable
``RELAY_ADMIN_TOKEN``. There is deliberately no
``--admin-token`` flag: a flag is visible to every user of the machine in ``ps`` and
lands in shell histories.

Exit codes: 0 done; 1 the relay refused (its problem in one line), cannot be reached,
or some replica's part is missing (each named on stderr); 2 bad arguments: no token,
a bad URL, ``--relay`` with ``--journal``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any
from urllib.parse import quote

import aiohttp

from relay.cli.errors import EXIT_USAGE, CommandError
from relay.cli.through_relay import read_answer, read_secret, relay_base
from relay.core.bearer import TokenFileError, parse_token_file

__all__ = [
    "TOKEN_ENV",
    "add_admin_relay_arguments",
    "admin_call",
    "endpoint_path",
    "report_missing",
    "uses_relay",
]

TOKEN_ENV = "RELAY_ADMIN_TOKEN"  # noqa: S105 - the variable's name, not a token
TIMEOUT = 660.0
"""Seconds a call may take: a journal check reads each replica's whole file."""


def add_admin_relay_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("through a running relay's admin API")
    group.add_argument(
        "--relay",
        metavar="URL",
        help="the relay's ops server, e.g. http://exmail-relay:8080: use /admin/v1/ (every"
        " replica) instead of the journal file",
    )
    group.add_argument(
        "--admin-token-file",
        metavar="FILE",
        help=f"file holding [http] admin_token (or ${TOKEN_ENV}; no token flag: ps shows flags)",
    )


def uses_relay(args: argparse.Namespace) -> bool:
    """Whether the command goes through the admin API; refuses mixed arguments (exit 2)."""
    if not args.relay:
        if args.admin_token_file:
            raise CommandError("--admin-token-file goes with --relay", exit_code=EXIT_USAGE)
        return False
    if getattr(args, "journal", None):
        raise CommandError(
            "--relay and --journal are exclusive: the relay uses its own journal",
            exit_code=EXIT_USAGE,
        )
    return True


def _token(args: argparse.Namespace) -> str:
    missing = f"--relay needs the admin token: --admin-token-file FILE or ${TOKEN_ENV}"
    text = read_secret(
        args.admin_token_file, TOKEN_ENV, flag="--admin-token-file", whole=True, missing=missing
    )
    if not args.admin_token_file:
        return text
    try:
        return parse_token_file(text, lone_min_length=1).first.value
    except TokenFileError as exc:
        raise CommandError(f"--admin-token-file: {exc}", exit_code=EXIT_USAGE) from None


def admin_call(
    args: argparse.Namespace,
    method: str,
    path: str,
    *,
    query: dict[str, str] | None = None,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``method {relay}/admin/v1/{path}``: the JSON answer, or a :class:`CommandError`."""
    base = relay_base(args.relay)
    headers = {"Authorization": f"Bearer {_token(args)}"}

    async def call() -> dict[str, Any]:
        timeout = aiohttp.ClientTimeout(total=TIMEOUT, sock_connect=10)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout, headers=headers) as http,
                http.request(method, f"{base}/admin/v1/{path}", params=query, json=body) as resp,
            ):
                answer: dict[str, Any] = await read_answer(resp)
                return answer
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            raise CommandError(f"cannot reach the relay at {base}: {reason}") from None

    return asyncio.run(call())


def endpoint_path(name: str, action: str) -> str:
    return f"endpoints/{quote(name, safe='')}/{action}"


def report_missing(answer: dict[str, Any]) -> int:
    """Name each replica whose part is missing, on stderr: exit 1 if any, else 0."""
    for part in answer.get("replicas", []):
        if not part.get("ok"):
            print(
                f"replica {part.get('replica')}: not reached ({part.get('error')})",
                file=sys.stderr,
            )
    return 0 if answer.get("complete", True) else 1
