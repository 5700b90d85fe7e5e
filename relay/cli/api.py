"""``exmail-relay api OPERATION [key=value ...]``: call any BizMail OpenApi operation, print JSON.

Also home of the connection options shared with ``sso-url``. Configuration is read
here, at the edge, and nowhere below: precedence is flag > environment
(``RELAY_CLIENT_ID``, ``RELAY_CLIENT_SECRET``, ``RELAY_API_URL``, ``RELAY_TOKEN_URL``,
``RELAY_LOGIN_URL``) > tenant of ``--config FILE`` (or ``RELAY_CONFIG``) > the
production defaults.

With ``--relay URL`` (and a client key) the call goes through a running relay's API
gateway instead, with the relay's token (:mod:`relay.cli.through_relay`).

Exmail allows one valid token per administrator account: when the command fetched a
token of its own, it prints one warning line on stderr (:func:`warn_if_own_token`),
because that invalidated the token of any relay running for the account.

Exit codes: 0 success; 1 the server refused (one line on stderr, printed by
:mod:`relay.cli`); 2 a usage error (bad ``key=value``, no credentials).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from relay.cli.errors import EXIT_USAGE, CommandError
from relay.cli.through_relay import add_relay_arguments, relay_call
from relay.exmail import DEFAULT_API_URL, DEFAULT_LOGIN_URL, DEFAULT_TOKEN_URL, ExmailClient

__all__ = [
    "add_connection_arguments",
    "client_from_args",
    "parse_params",
    "register",
    "run",
    "warn_if_own_token",
]

_ENV = {
    "client_id": "RELAY_CLIENT_ID",
    "client_secret": "RELAY_CLIENT_SECRET",
    "api_url": "RELAY_API_URL",
    "token_url": "RELAY_TOKEN_URL",
    "login_url": "RELAY_LOGIN_URL",
}


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that say which Exmail tenant to talk to, and how."""
    group = parser.add_argument_group("connection")
    group.add_argument("--config", metavar="FILE", help="TOML configuration (or RELAY_CONFIG)")
    group.add_argument("--tenant", metavar="NAME", help="tenant of the configuration file")
    group.add_argument("--client-id", help="administrator account (or RELAY_CLIENT_ID)")
    group.add_argument("--client-secret", help="interface key (or RELAY_CLIENT_SECRET)")
    group.add_argument("--client-secret-file", metavar="FILE", help="file holding the key")
    group.add_argument("--api-url", help=f"API base (or RELAY_API_URL; {DEFAULT_API_URL})")
    group.add_argument("--token-url", help=f"token URL (or RELAY_TOKEN_URL; {DEFAULT_TOKEN_URL})")
    group.add_argument(
        "--login-url", help=f"SSO login page (or RELAY_LOGIN_URL; {DEFAULT_LOGIN_URL})"
    )
    group.add_argument("--auth-method", choices=("form", "basic"), help="token request style")
    group.add_argument("--timeout", type=float, default=10.0, help="seconds per call (10)")


def client_from_args(args: argparse.Namespace) -> ExmailClient:
    """An :class:`ExmailClient` from flags, environment and the configuration file."""
    values: dict[str, Any] = {
        "api_url": DEFAULT_API_URL,
        "token_url": DEFAULT_TOKEN_URL,
        "login_url": DEFAULT_LOGIN_URL,
        "auth_method": "form",
        "action_codes": "authority",
    }
    config_path = args.config or os.environ.get("RELAY_CONFIG") or None
    if config_path is not None:
        from relay.app.loader import load_settings  # configuration is optional for this command

        tenant = load_settings(config_path).tenant(args.tenant)
        client_id, client_secret = tenant.credentials()  # ConfigError: an api2 tenant
        values.update(
            client_id=client_id,
            client_secret=client_secret,
            api_url=tenant.api_url,
            token_url=tenant.token_url,
            login_url=tenant.login_url,
            auth_method=tenant.auth_method,
            action_codes=tenant.action_codes,
        )
    elif args.tenant is not None:
        raise CommandError("--tenant needs --config (or RELAY_CONFIG)", exit_code=EXIT_USAGE)
    for key, env in _ENV.items():
        if os.environ.get(env):
            values[key] = os.environ[env]
    for key in ("client_id", "client_secret", "api_url", "token_url", "login_url", "auth_method"):
        if getattr(args, key, None):
            values[key] = getattr(args, key)
    if args.client_secret_file:
        try:
            values["client_secret"] = Path(args.client_secret_file).read_text().strip()
        except OSError as exc:
            raise CommandError(
                f"cannot read --client-secret-file: {exc.strerror}", exit_code=EXIT_USAGE
            ) from None
    secret = values.get("client_secret")
    if not values.get("client_id") or not secret:
        raise CommandError(
            "no credentials: give --client-id and --client-secret (or RELAY_CLIENT_ID and "
            "RELAY_CLIENT_SECRET), or --config FILE",
            exit_code=EXIT_USAGE,
        )
    return ExmailClient(
        client_id=str(values["client_id"]),
        client_secret=secret if isinstance(secret, SecretStr) else SecretStr(str(secret)),
        api_url=values["api_url"],
        token_url=values["token_url"],
        login_url=values["login_url"],
        auth_method=values["auth_method"],
        action_codes=values["action_codes"],
        timeout=args.timeout,
    )


def warn_if_own_token(command: str, client: ExmailClient) -> None:
    """One stderr line if ``client`` fetched a token: the running relay's is now void."""
    if client.tokens.fetches:
        print(
            f"exmail-relay {command}: warning: fetched an access token of its own for "
            f"{client.client_id}; this invalidates the token of any running relay for that "
            "account (its listener must fetch a new one)",
            file=sys.stderr,
        )


def parse_params(pairs: Sequence[str]) -> dict[str, Any]:
    """``key=value`` arguments to parameters; a repeated key becomes a list.

    ``key:=JSON`` gives a typed value (``department_id:=1``, ``enable:=true``,
    ``userlist:='["a@x.com","b@x.com"]'``): the second API's bodies are typed JSON, and
    ``--relay`` sends them as they are. A direct first-API call sends every value as a
    form string, so a JSON scalar becomes its text there.
    """
    params: dict[str, Any] = {}
    repeated: set[str] = set()  # keys already turned into a list by repetition
    for pair in pairs:
        key, sep, value = pair.partition("=")
        typed: Any = value
        if key.endswith(":"):
            key = key[:-1]
            try:
                typed = json.loads(value)
            except ValueError as exc:
                raise CommandError(
                    f"{key.strip()}:= takes a JSON value, got {value!r} ({exc})",
                    exit_code=EXIT_USAGE,
                ) from None
        if not sep or not key.strip():
            raise CommandError(
                f"expected key=value or key:=JSON, got {pair!r}", exit_code=EXIT_USAGE
            )
        key = key.strip()
        if key not in params:
            params[key] = typed
        elif key in repeated:
            params[key].append(typed)
        else:
            params[key] = [params[key], typed]
            repeated.add(key)
    return params


def _form_values(params: dict[str, Any]) -> dict[str, str | list[str]]:
    """The first API's form parameters: every value as text (JSON scalars as JSON)."""

    def text(value: Any) -> str:
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)

    return {
        key: [text(v) for v in value] if isinstance(value, list) else text(value)
        for key, value in params.items()
    }


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "api",
        help="call any BizMail OpenApi operation and print the JSON",
        description=(
            "Call OPERATION (e.g. user/get) with key=value parameters; repeat a key for a "
            "list (email=a@x.com email=b@x.com); key:=JSON for a typed value "
            "(department_id:=1). Prints the JSON answer, {} for an empty one."
        ),
    )
    add_connection_arguments(parser)
    add_relay_arguments(parser)
    parser.add_argument("operation", metavar="OPERATION", help="e.g. user/get, party/list")
    parser.add_argument("params", nargs="*", metavar="key=value|key:=JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    params = parse_params(args.params)
    if args.relay:
        operation = args.operation.strip("/")
        answer = asyncio.run(relay_call(args, f"openapi/{operation}", dict(params)))
        print(json.dumps(answer, ensure_ascii=False, indent=2))
        return 0
    client = client_from_args(args)

    async def call() -> dict[str, Any] | None:
        async with client:
            try:
                return await client.call(args.operation, _form_values(params))
            finally:
                warn_if_own_token("api", client)

    result = asyncio.run(call())
    print(json.dumps(result if result is not None else {}, ensure_ascii=False, indent=2))
    return 0
