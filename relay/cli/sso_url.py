"""``exmail-relay sso-url EMAIL``: print a one-click login URL into EMAIL's mailbox.

Fetches a fresh authkey (``mail/authkey``) and builds the SSO login URL; the
connection options are those of ``api`` (see :mod:`relay.cli.api`). The URL
holds a one-time ticket: it is printed to stdout only. Fetching the authkey takes a
token of its own, which invalidates a running relay's: one warning line on stderr says
so (for browsers, ``sso-link`` signs a link the relay serves instead). With ``--relay
URL`` and a client key it asks the running relay instead (``POST .../sso``), which
fetches the authkey with the token it holds.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from relay.cli.api import add_connection_arguments, client_from_args, warn_if_own_token
from relay.cli.through_relay import add_relay_arguments, relay_call

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sso-url",
        help="print a one-click login URL into a mailbox",
        description="Fetch an authkey for EMAIL and print the SSO login URL.",
    )
    add_connection_arguments(parser)
    add_relay_arguments(parser)
    parser.add_argument("email", metavar="EMAIL", help="the account to log into")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.relay:
        answer = asyncio.run(relay_call(args, "sso", {"email": args.email}))
        print(answer["url"])
        return 0
    client = client_from_args(args)

    async def build() -> str:
        async with client:
            try:
                return await client.sso_login_url(args.email)
            finally:
                warn_if_own_token("sso-url", client)

    print(asyncio.run(build()))
    return 0
