"""``--relay URL``: ``api`` and ``sso-url`` through a running relay's API gateway.

Exmail allows one valid token per administrator account, so a command that fetches its
own token knocks a running relay's listener out. With ``--relay URL`` the command
fetches nothing itself: it calls the relay's gateway (``POST
/v1/tenants/{tenant}/openapi/{operation}``, ``POST /v1/tenants/{tenant}/sso``) with a
``[[clients]]`` key, and the relay uses the token it holds.

The key is read here, at the edge: from ``--key-file FILE`` (first line) or the
environment variable ``RELAY_CLIENT_KEY``. There is deliberately no ``--key`` flag: a
key on the command line is visible to every user of the machine in ``ps`` and lands in
shell histories. ``--tenant`` names the tenant; without it, the client's only tenant
(``GET /v1/tenants``).

Errors: the gateway's problem (RFC 9457) in one line, ``title: detail``, exit 1; no key,
a bad URL or an ambiguous tenant exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp

from relay.cli.errors import EXIT_USAGE, CommandError

__all__ = ["add_relay_arguments", "read_answer", "read_secret", "relay_base", "relay_call"]

KEY_ENV = "RELAY_CLIENT_KEY"


def add_relay_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("through a running relay (no token of its own)")
    group.add_argument(
        "--relay", metavar="URL", help="the relay's HTTP server, e.g. http://exmail-relay:8080"
    )
    group.add_argument(
        "--key-file",
        metavar="FILE",
        help=f"file holding a [[clients]] key (or {KEY_ENV}; no --key flag: ps shows flags)",
    )


def read_secret(file: str | None, env: str, *, flag: str, missing: str, whole: bool = False) -> str:
    """A credential read at the edge: the first line of ``file`` (given as ``flag``; all
    of it with ``whole``), else the environment variable ``env``; none, or an unreadable
    file: exit 2 (``missing``)."""
    if file:
        try:
            text = Path(file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise CommandError(f"cannot read {flag}: {why}", exit_code=EXIT_USAGE) from None
        lines = text.splitlines()
        secret = text.strip() if whole else lines[0].strip() if lines else ""
    else:
        secret = os.environ.get(env, "").strip()
    if not secret:
        raise CommandError(missing, exit_code=EXIT_USAGE)
    return secret


def _key(args: argparse.Namespace) -> str:
    missing = f"--relay needs a client key: --key-file FILE or {KEY_ENV}"
    return read_secret(args.key_file, KEY_ENV, flag="--key-file", missing=missing)


def relay_base(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CommandError(f"--relay must be an http(s) URL, got {url!r}", exit_code=EXIT_USAGE)
    return url.rstrip("/")


async def read_answer(resp: aiohttp.ClientResponse) -> Any:
    text = await resp.text()
    try:
        body = json.loads(text) if text.strip() else {}
    except ValueError:
        body = None
    if resp.status >= 400:
        if isinstance(body, dict) and "title" in body:
            detail = body.get("detail") or ""
            line = (
                f"{body['title']}: {detail}"
                if detail and detail != body["title"]
                else body["title"]
            )
            raise CommandError(f"the relay answered {resp.status}: {line}")
        raise CommandError(f"the relay answered {resp.status} {resp.reason}")
    if body is None:
        raise CommandError("the relay's answer is not JSON")
    return body


async def relay_call(args: argparse.Namespace, path: str, body: dict[str, Any]) -> Any:
    """``POST {relay}/v1/tenants/{tenant}/{path}`` with ``body`` as JSON; the JSON answer."""
    base = relay_base(args.relay)
    headers = {"Authorization": f"Bearer {_key(args)}"}
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    try:
        async with aiohttp.ClientSession(timeout=timeout, headers=headers) as http:
            tenant = args.tenant
            if tenant is None:
                async with http.get(base + "/v1/tenants") as resp:
                    names = [t["name"] for t in (await read_answer(resp))["tenants"]]
                if len(names) != 1:
                    raise CommandError(
                        f"give --tenant: this client may use {', '.join(names) or 'no tenant'}",
                        exit_code=EXIT_USAGE,
                    )
                tenant = names[0]
            url = f"{base}/v1/tenants/{quote(tenant, safe='')}/{path}"
            async with http.post(url, json=body) as resp:
                return await read_answer(resp)
    except (aiohttp.ClientError, TimeoutError) as exc:
        reason = str(exc) or type(exc).__name__
        raise CommandError(f"cannot reach the relay at {base}: {reason}") from None
