"""``exmail-relay sso-link EMAIL --tenant T``: print a signed SSO link the relay serves.

Unlike ``sso-url``, this makes no call at all: it signs (:func:`relay.links.sign_sso_link`)
a link to the relay's ``/sso/{tenant}/{email}`` route, which fetches the authkey with the
relay's own token when a browser follows it. Handy for trying the route, and as the
reference signer for OA developers (``docs/gateway-links.md``).

The link secret is read here, at the edge, by :func:`link_secret`: from ``--secret-file``
(bytes, one trailing newline dropped) or ``RELAY_LINK_SECRET``. The base URL is where
browsers reach the relay: ``--base-url`` or ``RELAY_BASE_URL``. With ``--config`` the
tenant must exist in the configuration.

Exit codes: 0 printed; 2 a usage error (no secret, no base URL, a bad TTL, an unknown
tenant).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from relay.cli.errors import EXIT_USAGE, CommandError
from relay.links import sign_sso_link

__all__ = ["link_secret", "register", "run"]

MAX_TTL = 7 * 24 * 3600


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sso-link",
        help="print a signed SSO link served by the relay",
        description=(
            "Sign a link to the relay's /sso/{tenant}/{email} route (see docs/gateway-links.md). "
            "Makes no call: the relay fetches the authkey when a browser follows the link."
        ),
    )
    parser.add_argument("email", metavar="EMAIL", help="the account to log into")
    parser.add_argument("--tenant", required=True, metavar="NAME", help="the relay's tenant")
    parser.add_argument(
        "--ttl", type=int, default=300, metavar="SECONDS", help="link lifetime (300)"
    )
    parser.add_argument("--client", metavar="NAME", help="API client whose link secret signs")
    parser.add_argument("--config", metavar="FILE", help="TOML configuration (or RELAY_CONFIG)")
    parser.add_argument(
        "--base-url", metavar="URL", help="where browsers reach the relay (or RELAY_BASE_URL)"
    )
    parser.add_argument(
        "--secret-file", metavar="FILE", help="file holding the link secret (or RELAY_LINK_SECRET)"
    )
    parser.set_defaults(handler=run)


def link_secret(args: argparse.Namespace) -> bytes:
    """The link secret of ``--client`` (today: ``--secret-file`` or ``RELAY_LINK_SECRET``).

    The seam for the ``[[clients]]`` settings: there, this becomes the named client's
    ``link_secret``.
    """
    if args.secret_file:
        try:
            secret = Path(args.secret_file).read_bytes()
        except OSError as exc:
            raise CommandError(
                f"cannot read --secret-file: {exc.strerror}", exit_code=EXIT_USAGE
            ) from None
        secret = secret.removesuffix(b"\n").removesuffix(b"\r")
    else:
        secret = os.environ.get("RELAY_LINK_SECRET", "").encode()
    if not secret:
        raise CommandError(
            "no link secret: give --secret-file FILE or RELAY_LINK_SECRET", exit_code=EXIT_USAGE
        )
    return secret


def _base_url(args: argparse.Namespace) -> str:
    base = args.base_url or os.environ.get("RELAY_BASE_URL") or ""
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
        raise CommandError(
            "give --base-url (or RELAY_BASE_URL): the relay's http(s) URL as browsers see it",
            exit_code=EXIT_USAGE,
        )
    return base


def run(args: argparse.Namespace) -> int:
    if not 0 < args.ttl <= MAX_TTL:
        raise CommandError(f"--ttl must be 1..{MAX_TTL} seconds", exit_code=EXIT_USAGE)
    config_path = args.config or os.environ.get("RELAY_CONFIG") or None
    if config_path is not None:
        from relay.app.loader import load_settings  # configuration is optional here

        load_settings(config_path).tenant(args.tenant)  # ConfigError names the tenants
    base_url = _base_url(args)
    secret = link_secret(args)
    try:
        link = sign_sso_link(
            base_url=base_url,
            tenant=args.tenant,
            email=args.email,
            secret=secret,
            expires_at=int(time.time()) + args.ttl,
        )
    except ValueError as exc:
        raise CommandError(str(exc), exit_code=EXIT_USAGE) from None
    print(link)
    return 0
