"""The browser route of signed SSO links: ``GET /sso/{tenant}/{email}?exp=...&sig=...``.

Where it sits: an OA page rendered a link signed with its client's ``link_secret``
(:func:`relay.core.links.sign_sso_link`); the user's browser follows it here. This handler
checks the link (pure, :func:`relay.core.links.verify_sso_link`), fetches a one-time authkey
with the tenant's own client (so the relay stays the only holder of the tenant's token)
and answers ``302`` to the SSO URL built from the tenant's **configured** login URL. The
only part of the request that reaches the ``Location`` is the verified email, as a query
value: the route is never an open redirect. A tenant of the second API (``api = "api2"``)
gets its ready one-time URL from ``service/get_login_url`` instead
(:func:`relay.gateway.upstream.login_url`): there the ``Location`` is the URL that API
answered for the verified email.

Every refusal (malformed, tampered, expired, living longer than ``max_link_ttl``,
replayed, a tenant no client signs for) is the same plain ``403`` page, so a prober
learns nothing about which check failed. An upstream failure (unknown user, outage) is
a plain ``502`` page. One audit line per request on the ``relay.gateway.audit`` logger
names the client, the tenant, the target user and the outcome; never the signature, the
authkey or the ticket.

:func:`gateway_sso_route` mounts it on the relay's server from the gateway's clients.
The wiring supplies two lookups (``secrets_for_tenant``, ``client_for_tenant``)
and, for clients with ``single_use``, one :class:`relay.core.links.SeenLinks` shared by every
request of this process. A single-use link is spent only when the redirect is answered:
if Exmail fails (no authkey), its claim is given back and the link can be tried again.

A request another replica must answer is forwarded (:mod:`relay.gateway.forwarding`);
the forwarded answer keeps the security headers set here (``Cache-Control``,
``Referrer-Policy``, ``Content-Security-Policy``, ``X-Content-Type-Options``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from pydantic import SecretStr

from relay.core.links import (
    DEFAULT_MAX_TTL,
    DEFAULT_SKEW,
    Claim,
    LinkCheck,
    SeenLinks,
    normalize_email,
    verify_sso_link,
)
from relay.exmail import ExmailError
from relay.gateway.forwarding import Misdirected, forward_or_refuse
from relay.gateway.problems import Problem
from relay.gateway.routes import Gateway
from relay.gateway.upstream import UpstreamClient, login_url

__all__ = [
    "LinkSecret",
    "SecretsLookup",
    "gateway_sso_route",
    "sso_link_handler",
    "sso_link_route",
]

audit = logging.getLogger("relay.gateway.audit")

LinkSecret = tuple[str, SecretStr | bytes, bool]
"""``(client name, link secret, single_use)``: one API client allowed to sign for a tenant."""
SecretsLookup = Callable[[str], Sequence[LinkSecret]]
ClientLookup = Callable[[str], UpstreamClient | None]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}
_REFUSED = (
    "<!doctype html><html><head><meta charset='utf-8'><title>Link not valid</title></head>"
    "<body><h1>This sign-in link is not valid</h1><p>It may have expired or been used "
    "already. Open your mailbox again from the portal.</p></body></html>"
)
_UNAVAILABLE = (
    "<!doctype html><html><head><meta charset='utf-8'><title>Sign-in unavailable</title></head>"
    "<body><h1>Sign-in is unavailable</h1><p>The mail service could not sign you in right "
    "now. Try again from the portal in a moment.</p></body></html>"
)
# Which refusal to audit when several client secrets were tried: the most telling one.
_RANK = {
    LinkCheck.EXPIRED: 0,
    LinkCheck.TOO_LONG: 0,
    LinkCheck.BAD_SIGNATURE: 1,
    LinkCheck.MALFORMED: 2,
}
_AUTHENTIC = (LinkCheck.EXPIRED, LinkCheck.TOO_LONG)  # the signer is known: name it


def _page(text: str, status: int) -> web.Response:
    return web.Response(
        text=text, status=status, content_type="text/html", charset="utf-8", headers=_HEADERS
    )


def _secret_bytes(secret: SecretStr | bytes) -> bytes:
    return secret.get_secret_value().encode() if isinstance(secret, SecretStr) else secret


def _clip(text: str) -> str:
    """Request text in the audit line: bounded, one line (it is unverified input)."""
    return text[:200].encode("unicode_escape").decode("ascii")


def _record(client: str, tenant: str, user: str, outcome: str) -> None:
    audit.info(
        "sso link %s",
        outcome,
        extra={
            "route": "sso_link",
            "client": client,
            "tenant": _clip(tenant),
            "user": _clip(user),
            "outcome": outcome,
        },
    )


def sso_link_handler(
    *,
    secrets_for_tenant: SecretsLookup,
    client_for_tenant: ClientLookup,
    seen: SeenLinks | None = None,
    clock: Callable[[], float] = time.time,
    skew: float = DEFAULT_SKEW,
    max_ttl: float = DEFAULT_MAX_TTL,
    on_done: Callable[[str, int, float], None] | None = None,
) -> Handler:
    """The aiohttp handler of ``GET /sso/{tenant}/{email}``.

    ``secrets_for_tenant(tenant)`` lists the clients that may sign links for the tenant
    (an empty list refuses every link); ``client_for_tenant(tenant)`` is the tenant's
    :class:`~relay.exmail.ExmailClient` (the listener's, sharing its token) or
    :class:`~relay.exmail2.Exmail2Client`. ``seen`` is required as
    soon as one client is ``single_use``; without it such links answer 503.
    ``max_ttl``: a link whose ``exp`` is further ahead than ``now + max_ttl + skew`` is
    refused (``[gateway] max_link_ttl``). ``on_done(client, status, seconds)`` is told
    of every answer (the metrics).
    """
    record = _record

    def check(
        candidates: Sequence[LinkSecret], tenant: str, email: str, exp: str, sig: str
    ) -> tuple[str, LinkCheck, bool]:
        """The client whose secret passes (or the most telling refusal)."""
        best: tuple[str, LinkCheck, bool] = ("-", LinkCheck.MALFORMED, False)
        now = clock()
        for name, secret, single_use in candidates:
            got = verify_sso_link(
                tenant=tenant,
                email=email,
                exp=exp,
                sig=sig,
                secret=_secret_bytes(secret),
                now=now,
                skew=skew,
                max_ttl=max_ttl,
            )
            if got is LinkCheck.OK:
                return name, got, single_use
            if _RANK[got] < _RANK[best[1]]:
                best = (name if got in _AUTHENTIC else "-", got, single_use)
        return best

    async def handle(request: web.Request) -> web.Response:
        started = time.monotonic()
        name, response = await answer(request)
        if on_done is not None:
            on_done(name, response.status, time.monotonic() - started)
        return response

    async def answer(request: web.Request) -> tuple[str, web.Response]:
        tenant = request.match_info["tenant"]
        email = normalize_email(request.match_info["email"])
        exp = request.query.get("exp", "")
        sig = request.query.get("sig", "")
        client = client_for_tenant(tenant)
        if client is None:
            record("-", tenant, email, "unknown_tenant")
            return "-", _page(_REFUSED, 403)
        candidates = secrets_for_tenant(tenant)
        if not candidates:
            record("-", tenant, email, "no_link_secret")
            return "-", _page(_REFUSED, 403)
        name, outcome, single_use = check(candidates, tenant, email, exp, sig)
        if outcome is not LinkCheck.OK:
            record(name, tenant, email, outcome.value)
            return name, _page(_REFUSED, 403)
        key = f"{name}\n{sig}"
        if single_use:
            # Claimed before the upstream call, so two browsers racing with one link
            # cannot both get in; given back below if no redirect comes of it.
            claim = (
                Claim.FULL if seen is None else seen.claim(key, until=int(exp) + skew, now=clock())
            )
            if claim is not Claim.FIRST:
                record(name, tenant, email, "replayed" if claim is Claim.REPLAYED else "capacity")
                return name, (
                    _page(_REFUSED, 403) if claim is Claim.REPLAYED else _page(_UNAVAILABLE, 503)
                )
        try:
            location = (await login_url(client, email)).url
        except BaseException as exc:  # an upstream error, or the request cancelled
            if single_use and seen is not None:
                seen.release(key)  # not spent: no redirect was answered
            if isinstance(exc, Problem):  # an api2 tenant without the sso application
                record(name, tenant, email, f"upstream_error ({exc.kind})")
                return name, _page(_UNAVAILABLE, 502)
            if not isinstance(exc, ExmailError):
                raise
            record(name, tenant, email, f"upstream_error ({type(exc).__name__})")
            return name, _page(_UNAVAILABLE, 502)
        record(name, tenant, email, "redirected")
        return name, web.Response(status=302, headers={**_HEADERS, "Location": location})

    return handle


def sso_link_route(
    *,
    secrets_for_tenant: SecretsLookup,
    client_for_tenant: ClientLookup,
    seen: SeenLinks | None = None,
    clock: Callable[[], float] = time.time,
    skew: float = DEFAULT_SKEW,
    max_ttl: float = DEFAULT_MAX_TTL,
    path: str = "/sso/{tenant}/{email}",
    on_done: Callable[[str, int, float], None] | None = None,
) -> web.RouteDef:
    """The route for ``app.add_routes([...])``; GET only (no HEAD: a prefetch must not
    spend a single-use link)."""
    handler = sso_link_handler(
        secrets_for_tenant=secrets_for_tenant,
        client_for_tenant=client_for_tenant,
        seen=seen,
        clock=clock,
        skew=skew,
        max_ttl=max_ttl,
        on_done=on_done,
    )
    return web.get(path, handler, allow_head=False)


def gateway_sso_route(gateway: Gateway) -> web.RouteDef:
    """``GET /sso/{tenant}/{email}`` on the relay's server, from the gateway's clients.

    A client signs for a tenant when it has a ``link_secret``, scope ``sso`` and may use
    the tenant; its ``single_use`` links share the gateway's one :class:`SeenLinks`. The
    redirect goes to the login URL of the tenant's settings (its client's
    ``login_url``). Metrics as for ``/v1/`` (``route`` ``/sso/{tenant}/{email}``).
    """

    def secrets_for_tenant(tenant: str) -> list[LinkSecret]:
        return [
            (c.name, c.link_secret, c.single_use)
            for c in gateway.clients.clients
            if c.link_secret is not None and "sso" in c.scopes and c.may_use(tenant)
        ]

    def client_for_tenant(tenant: str) -> UpstreamClient | None:
        served = gateway.tenants.get(tenant)
        return served.client if served is not None else None

    def done(client: str, status: int, seconds: float) -> None:
        gateway.observer.api_request(client, "/sso/{tenant}/{email}", status, seconds)
        for api_client in gateway.clients.clients:
            if api_client.name == client:
                gateway.clients.used(api_client, gateway.clock())

    inner = sso_link_handler(
        secrets_for_tenant=secrets_for_tenant,
        client_for_tenant=client_for_tenant,
        seen=gateway.seen,
        clock=gateway.clock,
        max_ttl=gateway.max_link_ttl,
        on_done=done,
    )

    async def handle(request: web.Request) -> web.StreamResponse:
        # Like /v1: only the replica running the tenant answers (it holds the token and
        # the single-use memory); the others send the browser's request on to it.
        tenant = request.match_info["tenant"]
        if gateway.tenants.get(tenant) is not None and gateway.serves(tenant):
            return await inner(request)
        owner = gateway.owner_of(tenant)
        if owner is None:
            if gateway.tenants.get(tenant) is None:
                return await inner(request)  # unknown here: the plain refusal page
            return _page(_UNAVAILABLE, 503)  # between owners: try again in a moment
        try:
            return await forward_or_refuse(
                request,
                Misdirected(tenant, owner),
                gateway.forwarder,
                gateway.max_body_bytes,
                moving=tenant in gateway.tenants,
            )
        except Problem as problem:  # the owner unreachable, a loop, a body too large
            _record("-", tenant, request.match_info["email"], f"forward_failed ({problem.kind})")
            done("-", problem.status, 0.0)
            return _page(_UNAVAILABLE, problem.status)

    return web.get("/sso/{tenant}/{email}", handle, allow_head=False)
