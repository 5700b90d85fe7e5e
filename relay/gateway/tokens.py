"""The token service: OA programs borrow the tenant's one access token instead of
fetching their own (which would knock the relay's listener out).

Where it sits: aiohttp handlers, mounted by the gateway under ``/v1/tenants/{tenant}``
and guarded by scope ``token``. They read the tenant's :class:`TokenCache`, the very
cache the listener uses (``ExmailClient.tokens``), so every holder of the token shares
one fetch:

- ``GET .../token``: ``{"access_token", "expires_in"}``, fetched only if the cache
  holds none;
- ``POST .../token/refresh`` with ``{"stale": "<token>"}``: compare-and-swap, a new
  token only if ``stale`` is still the current one, else the current one.

A herd of clients that all saw ``invalid_token`` for the same token and all ask for a
refresh cause one upstream fetch (:meth:`TokenCache.refresh` holds the lock; the
others find the token already replaced). ``expires_in`` is the cache's renewal time, a
little before the server's expiry, so borrowers come back before the server refuses.

The token is in the answer body only (``Cache-Control: no-store``): never in a log
line, an error or a header.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from aiohttp import web
from pydantic import SecretStr

from relay.exmail import ExmailError, ExmailTimeout, TemporarilyUnavailable, TokenCache

__all__ = ["MAX_BODY", "TokenLookup", "token_routes"]

TokenLookup = Callable[[str], TokenCache | None]
"""The tenant's token cache, or ``None`` for a tenant the relay does not serve."""

MAX_BODY = 4096
_NO_STORE = {"Cache-Control": "no-store"}


def _problem(status: int, title: str, detail: str = "", **headers: str) -> web.Response:
    body: dict[str, object] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    return web.Response(
        text=json.dumps(body),
        status=status,
        content_type="application/problem+json",
        headers={**_NO_STORE, **headers},
    )


def _upstream_problem(exc: ExmailError) -> web.Response:
    # The class name only: an Exmail message names the operation and the errcode, and
    # that is all a borrower needs to know to retry later.
    if isinstance(exc, TemporarilyUnavailable):
        return _problem(
            503, "Exmail is temporarily unavailable", "errcode 1002", **{"Retry-After": "5"}
        )
    if isinstance(exc, ExmailTimeout):
        return _problem(504, "Exmail did not answer in time")
    return _problem(502, "Exmail refused the token request", type(exc).__name__)


def _answer(cache: TokenCache, token: SecretStr) -> web.Response:
    body = {"access_token": token.get_secret_value(), "expires_in": int(cache.expires_in)}
    return web.Response(text=json.dumps(body), content_type="application/json", headers=_NO_STORE)


def token_routes(
    tokens_for_tenant: TokenLookup, *, prefix: str = "/v1/tenants/{tenant}"
) -> list[web.RouteDef]:
    """The two routes of the token service, for ``app.add_routes``.

    ``prefix`` must hold ``{tenant}``. An unknown tenant answers 404, a bad refresh
    body 400, an upstream failure 502/503/504; all ``application/problem+json``.
    """
    if "{tenant}" not in prefix:
        raise ValueError("prefix must hold {tenant}")

    def cache_of(request: web.Request) -> TokenCache | None:
        return tokens_for_tenant(request.match_info["tenant"])

    async def get_token(request: web.Request) -> web.Response:
        cache = cache_of(request)
        if cache is None:
            return _problem(404, "Unknown tenant")
        try:
            token = await cache.get()
        except ExmailError as exc:
            return _upstream_problem(exc)
        return _answer(cache, token)

    async def refresh_token(request: web.Request) -> web.Response:
        cache = cache_of(request)
        if cache is None:
            return _problem(404, "Unknown tenant")
        if request.content_length is not None and request.content_length > MAX_BODY:
            return _problem(413, "Request body too large")
        try:
            raw = await request.content.read(MAX_BODY + 1)
            if len(raw) > MAX_BODY:
                return _problem(413, "Request body too large")
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            body = None
        stale = body.get("stale") if isinstance(body, dict) else None
        if not isinstance(stale, str) or not stale:
            return _problem(400, "Bad request", 'expected {"stale": "<the refused token>"}')
        try:
            token = await cache.refresh(SecretStr(stale))
        except ExmailError as exc:
            return _upstream_problem(exc)
        return _answer(cache, token)

    return [
        web.get(prefix + "/token", get_token, allow_head=False),
        web.post(prefix + "/token/refresh", refresh_token),
    ]
