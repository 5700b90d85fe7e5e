"""The token service: OA programs borrow the tenant's one access token instead of
fetching their own (which would knock the relay's listener out).

Where it sits: aiohttp handlers, mounted by the gateway under ``/v1/tenants/{tenant}``
and guarded by scope ``token``. They read the tenant's :class:`TokenCache`, the very
cache the listener uses (``ExmailClient.tokens``), so every holder of the token shares
one fetch:

- ``GET .../token``: ``{"access_token", "expires_in"}``, fetched only if the cache
  holds none;
- ``POST .../token/refresh`` with ``{"stale": "<token>"}``: compare-and-swap, a new
  token only if ``stale`` is still the current one *and* that token is at least
  ``min_token_age`` seconds old or the relay itself saw Exmail refuse it; else the
  current one. A borrower's word alone is not proof that the token is bad, and each
  fetch voids the token everybody else holds: without this bound, a client with scope
  ``token`` could knock the listener out as often as it likes.

A herd of clients that all saw ``invalid_token`` for the same token and all ask for a
refresh cause one upstream fetch (:meth:`TokenCache.refresh` holds the lock; the
others find the token already replaced). ``expires_in`` is the cache's renewal time, a
little before the server's expiry, so borrowers come back before the server refuses.

Errors are the gateway's problems (:mod:`relay.gateway.problems`): 404 for a tenant not
served here, 400/413 for a bad refresh body, 502/503/504 when Exmail fails.

The token is in the answer body only (``Cache-Control: no-store``): never in a log
line, an error or a header.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from pydantic import SecretStr

from relay.exmail import ExmailError, TokenCache
from relay.gateway.bodies import TokenAnswer
from relay.gateway.problems import Problem, from_exmail_error
from relay.gateway.request_body import parse_json, read_body

__all__ = ["MAX_BODY", "TokenLookup", "token_routes"]

TokenLookup = Callable[[web.Request], TokenCache | None]
"""The request's tenant's token cache, or ``None`` for a tenant the relay does not serve.

The gateway's lookup also checks the client's scope ``token`` and its tenants (it
raises :class:`~relay.gateway.problems.Problem` 403 for either)."""

MAX_BODY = 4096
"""The default bound of a refresh body, when mounted outside the gateway."""
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_NO_STORE = {"Cache-Control": "no-store"}


def _unknown(request: web.Request) -> Problem:
    tenant = request.match_info.get("tenant", "")
    return Problem(404, "unknown-tenant", "Unknown tenant", f"no tenant {tenant!r} is served here")


def _answer(cache: TokenCache, token: SecretStr) -> web.Response:
    body = TokenAnswer(access_token=token.get_secret_value(), expires_in=int(cache.expires_in))
    return web.Response(
        text=body.model_dump_json(), content_type="application/json", headers=_NO_STORE
    )


async def _stale(request: web.Request, max_body: int) -> SecretStr:
    """The refused token the body names; :class:`Problem` 400/413 otherwise."""
    body = parse_json(await read_body(request, max_body))
    stale = body.get("stale") if isinstance(body, dict) else None
    if not isinstance(stale, str) or not stale:
        raise Problem(
            400, "invalid-request", "Invalid request", 'expected {"stale": "<the refused token>"}'
        )
    return SecretStr(stale)


def _problems(handler: Handler) -> Handler:
    """``handler`` with a raised :class:`Problem` rendered (also outside the gateway)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except Problem as problem:
            return problem.response(instance=request.path)

    return handle


def token_routes(
    tokens_for: TokenLookup,
    *,
    prefix: str = "/v1/tenants/{tenant}",
    max_body: int = MAX_BODY,
    min_token_age: float = 60.0,
) -> list[web.RouteDef]:
    """The two routes of the token service, for ``app.add_routes``.

    ``prefix`` must hold ``{tenant}``; a refresh body over ``max_body`` bytes is 413 (the
    gateway passes ``[gateway] max_body_bytes``). ``min_token_age``: a refresh fetches
    only a token at least this old (or one the relay saw refused); see the module
    docstring. An unknown tenant answers 404, a bad refresh body 400, an upstream
    failure 502/503/504; all ``application/problem+json`` (:mod:`relay.gateway.problems`;
    the gateway's middleware renders a :class:`Problem` the lookup raises, the handlers
    render their own).
    """
    if "{tenant}" not in prefix:
        raise ValueError("prefix must hold {tenant}")

    def cache_of(request: web.Request) -> TokenCache:
        cache = tokens_for(request)
        if cache is None:
            raise _unknown(request)
        return cache

    async def get_token(request: web.Request) -> web.Response:
        cache = cache_of(request)
        try:
            token = await cache.get()
        except ExmailError as exc:
            return from_exmail_error(exc).response(instance=request.path)
        return _answer(cache, token)

    async def refresh_token(request: web.Request) -> web.Response:
        cache = cache_of(request)
        try:
            token = await cache.refresh(await _stale(request, max_body), min_age=min_token_age)
        except ExmailError as exc:
            return from_exmail_error(exc).response(instance=request.path)
        return _answer(cache, token)

    return [
        web.get(prefix + "/token", _problems(get_token), allow_head=False),
        web.post(prefix + "/token/refresh", _problems(refresh_token)),
    ]
