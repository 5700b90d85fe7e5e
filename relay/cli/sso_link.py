"""``exmail-relay sso-link EMAIL --tenant T``: print a signed SSO link the relay serves.

Unlike ``sso-url``, this makes no call at all: it signs (:func:`relay.core.links.sign_sso_link`)
a link to the relay's ``/sso/{tenant}/{email}`` route, which fetches the authkey with the
relay's own token when a browser follows it. Handy for trying the route, and as the
reference signer for OA developers (``docs/gateway-links.md``).

The link secret is read here, at the edge, by :func:`link_secret`: normally the
``link_secret`` of the ``[[clients]]`` entry ``--client NAME`` in ``--config FILE`` (or
``RELAY_CONFIG``); without ``--client``, the only client that may sign for the tenant
(a ``link_secret``, scope ``sso``, the tenant allowed). ``--secret-file`` (bytes, one
trailing newline dropped) or ``RELAY_LINK_SECRET`` override it, e.g. for an OA
developer without the relay's configuration. The base URL is where browsers reach the
relay: ``--base-url`` or ``RELAY_BASE_URL``. With ``--config`` the tenant must exist in
the configuration.

``--ttl`` may not exceed the relay's ``[gateway] max_link_ttl`` (from ``--config``, else
its default, 600 s): a longer one is refused (exit 2) rather than clamped, since the
relay would refuse the link and a silently shorter lifetime surprises whoever asked.

Exit codes: 0 printed; 2 a usage error (no secret, no base URL, a bad or too long TTL, an
unknown tenant).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from relay.cli.errors import EXIT_USAGE, CommandError

if TYPE_CHECKING:
    from relay.app.settings import Settings
from relay.core.links import DEFAULT_MAX_TTL, sign_sso_link

__all__ = ["link_secret", "register", "run"]


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
    parser.add_argument(
        "--client", metavar="NAME", help="[[clients]] entry whose link_secret signs"
    )
    parser.add_argument("--config", metavar="FILE", help="TOML configuration (or RELAY_CONFIG)")
    parser.add_argument(
        "--base-url", metavar="URL", help="where browsers reach the relay (or RELAY_BASE_URL)"
    )
    parser.add_argument(
        "--secret-file",
        metavar="FILE",
        help="file holding the link secret (or RELAY_LINK_SECRET); overrides --client's",
    )
    parser.set_defaults(handler=run)


def _client_secret(args: argparse.Namespace, settings: Settings | None) -> bytes:
    """The ``link_secret`` of ``--client`` (or of the only client signing for the tenant)."""
    if settings is None:
        raise CommandError(
            "no link secret: give --config FILE (with [[clients]] link_secret), or "
            "--secret-file FILE or RELAY_LINK_SECRET",
            exit_code=EXIT_USAGE,
        )
    signers = [
        c
        for c in settings.clients
        if c.link_secret is not None
        and "sso" in c.scopes
        and (not c.tenants or args.tenant in c.tenants)
    ]
    if args.client is not None:
        named = [c for c in settings.clients if c.name == args.client]
        if not named:
            raise CommandError(f"no [[clients]] entry named {args.client!r}", exit_code=EXIT_USAGE)
        if named[0] not in signers:
            raise CommandError(
                f"client {args.client!r} cannot sign links for tenant {args.tenant!r}: it needs "
                "a link_secret, scope sso and the tenant among its tenants",
                exit_code=EXIT_USAGE,
            )
        signers = named
    if len(signers) != 1:
        names = ", ".join(c.name for c in signers) or "none"
        raise CommandError(
            f"give --client: clients signing for tenant {args.tenant!r}: {names}",
            exit_code=EXIT_USAGE,
        )
    secret = signers[0].link_secret
    assert secret is not None  # a signer has one
    return secret.get_secret_value().encode()


def link_secret(args: argparse.Namespace, settings: Settings | None = None) -> bytes:
    """The secret that signs: ``--secret-file``, ``RELAY_LINK_SECRET``, else the client's
    ``link_secret`` in ``settings``."""
    if args.secret_file:
        try:
            secret = Path(args.secret_file).read_bytes()
        except OSError as exc:
            raise CommandError(
                f"cannot read --secret-file: {exc.strerror}", exit_code=EXIT_USAGE
            ) from None
        secret = secret.removesuffix(b"\n").removesuffix(b"\r")
    elif os.environ.get("RELAY_LINK_SECRET"):
        secret = os.environ["RELAY_LINK_SECRET"].encode()
    else:
        secret = _client_secret(args, settings)
    if not secret:
        raise CommandError("the link secret is empty", exit_code=EXIT_USAGE)
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


def _check_ttl(ttl: int, settings: Settings | None) -> None:
    limit = int(settings.gateway.max_link_ttl) if settings is not None else DEFAULT_MAX_TTL
    if ttl <= 0:
        raise CommandError("--ttl must be a positive number of seconds", exit_code=EXIT_USAGE)
    if ttl > limit:
        where = "the configuration's" if settings is not None else "the default"
        raise CommandError(
            f"--ttl {ttl} is over [gateway] max_link_ttl ({limit} s, {where}): the relay "
            "would refuse the link",
            exit_code=EXIT_USAGE,
        )


def run(args: argparse.Namespace) -> int:
    if args.ttl <= 0:
        _check_ttl(args.ttl, None)
    config_path = args.config or os.environ.get("RELAY_CONFIG") or None
    settings = None
    if config_path is not None:
        from relay.app.loader import load_settings  # configuration is optional here

        settings = load_settings(config_path)
        settings.tenant(args.tenant)  # ConfigError names the tenants
    _check_ttl(args.ttl, settings)
    base_url = _base_url(args)
    secret = link_secret(args, settings)
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
