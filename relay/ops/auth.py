"""Who may read the operations server: a Bearer token and/or HTTP Basic credentials.

Where it sits: an aiohttp middleware that :func:`relay.ops.http.build_app` installs when
``[http] auth_token`` or ``basic_user``/``basic_password`` are set. Both secrets are
compared in constant time (:func:`hmac.compare_digest`; a token against every token of
``auth_token_file``, :meth:`relay.core.bearer.TokenSet.match`, which the file may list
several of during a rotation), and neither the expected nor the offered credentials ever
appear in a response or a log line. Paths in ``open_paths``
(the probes, unless ``[http] protect_probes``) are served without credentials, so a
kubelet or Prometheus needs none; paths under ``open_prefixes`` (the API gateway's
``/v1/``, which checks its own client keys) are not this middleware's to guard.
"""

from __future__ import annotations

import hmac
from base64 import b64decode
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from pydantic import SecretStr

from relay.core.bearer import TokenSource

__all__ = ["auth_middleware"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _bearer_ok(header: str, tokens: TokenSource | None) -> bool:
    if tokens is None or not header.startswith("Bearer "):
        return False
    return tokens.current().match(header[7:]) is not None


def _basic_ok(header: str, basic: tuple[str, SecretStr] | None) -> bool:
    if basic is None or not header.startswith("Basic "):
        return False
    try:
        user, _, password = b64decode(header[6:]).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        user, password = "", ""
    expected = basic[1].get_secret_value().encode()
    return user == basic[0] and hmac.compare_digest(password.encode(), expected)


def auth_middleware(
    *,
    tokens: TokenSource | None,
    basic: tuple[str, SecretStr] | None,
    open_paths: frozenset[str] = frozenset(),
    open_prefixes: tuple[str, ...] = (),
) -> Middleware:
    """Answer 401 (with a challenge) unless the request carries a valid credential."""
    challenge = 'Basic realm="exmail-relay"' if basic is not None else "Bearer"

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in open_paths or request.path.startswith(open_prefixes):
            return await handler(request)
        header = request.headers.get("Authorization", "")
        if _bearer_ok(header, tokens) or _basic_ok(header, basic):
            return await handler(request)
        return web.Response(
            status=401, text="authentication required\n", headers={"WWW-Authenticate": challenge}
        )

    return check
