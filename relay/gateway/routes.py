"""The gateway's aiohttp sub-application: the ``/v1/`` routes, their auth, limits,
metrics and audit line.

| route | scope | answers |
|---|---|---|
| ``GET /v1/tenants`` | any | the tenants this client may use, each with its state |
| ``GET /v1/tenants/{tenant}/users/{email}`` | read | ``user/get`` as typed JSON |
| ``GET /v1/tenants/{tenant}/users/{email}/unread`` | read | the unread count |
| ``POST /v1/tenants/{tenant}/sso`` | sso | ``{"url", "expires_in"}`` |
| ``POST /v1/tenants/{tenant}/openapi/{operation}`` | read/sso/write | the upstream JSON |
| ``GET /v1/tenants/{tenant}/token`` | token | the tenant's token (:mod:`relay.gateway.tokens`) |
| ``POST /v1/tenants/{tenant}/token/refresh`` | token | compare-and-swap refresh |
| ``GET /v1/openapi.json``, ``GET /v1/docs`` | none | this API (:mod:`~.openapi`) |

A tenant another replica owns (``[sharding] count > 1``) is forwarded to its owner or
answered 421 (:mod:`relay.gateway.forwarding`).

A method a path does not offer is ``405`` with ``Allow`` (problem+json, before
authentication: the OpenAPI document is public anyway); a path the gateway does not
have is ``404`` after authentication.

One middleware does, in order: find the client (401 + ``WWW-Authenticate``), take a
token from its bucket (429 + ``Retry-After``), run the handler, turn any
:class:`~relay.gateway.problems.Problem` or Exmail error into ``problem+json``, then
report the call to the observer (``route`` is the route's template, never the raw
path), note the client's last use, and write one audit line (client, tenant, route,
status, and the target user for SSO; never a key, token, authkey or login URL).

Upstream calls go through the tenant's *gateway* client: the listener's token cache,
its own connection pool, behind the tenant's :class:`~relay.gateway.limits.TenantGate`.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from relay.core.links import DEFAULT_MAX_TTL, SeenLinks
from relay.exmail import ExmailClient, ExmailError, InvalidRequest, TokenCache
from relay.exmail import validation as v
from relay.exmail2 import App, Exmail2Client
from relay.gateway.bodies import SsoUrl, TenantList, TenantState, UnreadAnswer
from relay.gateway.catalogues import SecondCall, plan, scope_of
from relay.gateway.clients import ApiClient, ClientRegistry
from relay.gateway.forwarding import Forwarder, Misdirected, OwnerLookup, forward_or_refuse
from relay.gateway.limits import TenantGate, TokenBucket, retry_after
from relay.gateway.openapi import docs_page, openapi_document
from relay.gateway.operations import Values
from relay.gateway.problems import Problem, from_exmail_error
from relay.gateway.request_body import parse_json, read_body
from relay.gateway.tokens import token_routes
from relay.gateway.unread import UnreadCache
from relay.gateway.upstream import (
    API_NAMES,
    Api,
    api_of,
    login_url,
    require_app,
    unread_count,
    user_answer,
)
from relay.runtime.observer import Observer

__all__ = ["GATEWAY", "Gateway", "GatewayTenant", "gateway_app"]

audit = logging.getLogger("relay.gateway.audit")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="exmail-relay"'}
_CLIENT: web.RequestKey[ApiClient] = web.RequestKey("client", ApiClient)
_AUDIT_USER: web.RequestKey[str] = web.RequestKey("audit_user", str)


@dataclass(frozen=True, slots=True)
class GatewayTenant:
    """One tenant as the gateway sees it: its gateway client (of the tenant's API) and
    its gate."""

    name: str
    client: ExmailClient | Exmail2Client
    gate: TenantGate

    @property
    def api(self) -> Api:
        return api_of(self.client)


@dataclass(slots=True)
class Gateway:
    """Everything the routes need, built by the composition root."""

    clients: ClientRegistry
    tenants: Mapping[str, GatewayTenant]
    unread: UnreadCache
    states: Callable[[], Mapping[str, str]] = dict
    """Each served tenant's listener state (``connected``, ``backoff``, ...)."""
    observer: Observer = field(default_factory=Observer)
    max_body_bytes: int = 64 * 1024
    sso_expires_in: int = 300
    min_token_age: float = 60.0
    """A borrower's token refresh fetches only a token at least this old (seconds)."""
    clock: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    buckets: dict[str, TokenBucket] = field(default_factory=dict)
    seen: SeenLinks = field(default_factory=SeenLinks)
    """Used single-use SSO links: one per process, shared by every request."""
    max_link_ttl: float = DEFAULT_MAX_TTL
    """How far ahead a signed link's ``exp`` may be (``[gateway] max_link_ttl``)."""
    owner_of: OwnerLookup = lambda tenant: None
    """The replica that owns a tenant not served here (the sharding seam)."""
    serves: Callable[[str], bool] = lambda tenant: True
    """Whether this replica runs ``tenant`` right now (lease mode: holds its shard)."""
    forwarder: Forwarder | None = None
    """Sends requests on to their owner; ``None``: answer 421 instead."""

    def bucket(self, client: ApiClient) -> TokenBucket:
        bucket = self.buckets.get(client.name)
        if bucket is None:
            bucket = TokenBucket(client.rate, client.burst, self.monotonic())
            self.buckets[client.name] = bucket
        return bucket


GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway", Gateway)


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def _client(request: web.Request) -> ApiClient:
    return request[_CLIENT]


def _tenant(request: web.Request, scope: str) -> GatewayTenant:
    """The path's tenant, if the client has ``scope`` and may use it."""
    client = _client(request)
    if scope not in client.scopes:
        raise Problem(
            403, "missing-scope", "Missing scope",
            f"this call needs scope {scope!r}, which client {client.name!r} lacks", scope=scope,
        )  # fmt: skip
    name = request.match_info["tenant"]
    if not client.may_use(name):
        raise Problem(
            403, "tenant-forbidden", "Tenant not allowed",
            f"client {client.name!r} may not use tenant {name!r}",
        )  # fmt: skip
    gateway = request.app[GATEWAY]
    tenant = gateway.tenants.get(name)
    if tenant is None or not gateway.serves(name):
        # Never call Exmail for a tenant another replica owns: the call would need the
        # token, and fetching it would take it from the owner (one token per account).
        owner = gateway.owner_of(name)
        if owner is not None:
            raise Misdirected(name, owner)
        if tenant is not None:
            raise Problem(
                503, "tenant-moving", "Tenant changing owner",
                f"tenant {name!r} is between owners (a takeover is under way); try again",
                headers={"Retry-After": "1"},
            )  # fmt: skip
        raise Problem(404, "unknown-tenant", "Unknown tenant", f"no tenant {name!r} is served here")
    return tenant


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(data, ensure_ascii=False, default=str),
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


async def _raw(request: web.Request) -> tuple[dict[str, Any], bool]:
    """The request body as ``(values, form)``: a JSON object (``form`` false) or a
    urlencoded form (``form`` true; a repeated key is a list), read whole and bounded
    (:mod:`~relay.gateway.request_body`), or a problem. No body: ``({}, False)``."""
    raw = await read_body(request, request.app[GATEWAY].max_body_bytes)
    if not raw:  # no body; whitespace alone is not JSON
        return {}, False
    if request.content_type == "application/json":
        data = parse_json(raw)
        if not isinstance(data, dict):
            raise InvalidRequest("the JSON body must be an object")
        return data, False
    if request.content_type in ("application/x-www-form-urlencoded", "application/octet-stream"):
        try:
            pairs = parse_qsl(raw.decode(), keep_blank_values=True, strict_parsing=True)
        except (ValueError, UnicodeDecodeError):
            raise InvalidRequest("the body is not a valid urlencoded form") from None
        form: dict[str, Any] = {}
        for key, value in pairs:
            held = form.get(key)
            form[key] = value if held is None else [*_as_list(held), value]
        return form, True
    raise Problem(
        415, "unsupported-media-type", "Unsupported media type",
        "send application/json or application/x-www-form-urlencoded",
    )  # fmt: skip


async def _body(request: web.Request) -> Values:
    """The SSO body: only its string values are kept (others are ignored, as its schema
    says)."""
    data, form = await _raw(request)
    return data if form else {key: value for key, value in data.items() if isinstance(value, str)}


def _as_list(value: str | list[str]) -> list[str]:
    return value if isinstance(value, list) else [value]


# -- handlers --------------------------------------------------------------------------


_NO_STATE: dict[Api, str] = {"openapi": "unknown", "api2": "callback"}


async def list_tenants(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    client = _client(request)
    states = gateway.states()
    tenants = [
        # An api2 tenant has no listener: its new mail comes by callback.
        TenantState(name=name, state=states.get(name, _NO_STATE[tenant.api]))
        for name, tenant in sorted(gateway.tenants.items())
        if client.may_use(name)
    ]
    return _json(TenantList(tenants=tenants).model_dump(mode="json"))


async def get_user(request: web.Request) -> web.Response:
    tenant = _tenant(request, "read")
    async with tenant.gate.slot(tenant.name):
        user = await user_answer(tenant.client, request.match_info["email"])
    return _json(user)


def _unread(email: str, count: int, source: str, age: float) -> dict[str, Any]:
    answer = UnreadAnswer.model_validate(
        {"email": email, "unread": count, "source": source, "age": age}
    )
    return answer.model_dump(mode="json")


# A JSON number, as the document's ``type: number`` means (not Python's "inf", "1_0").
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


async def get_unread(request: web.Request) -> web.Response:
    tenant = _tenant(request, "read")
    gateway = request.app[GATEWAY]
    email = v.check_email("email", request.match_info["email"])
    raw = request.query.get("max_age", "60")
    max_age = float(raw) if _NUMBER.fullmatch(raw) else -1.0  # 1e999 is inf: fine
    if not max_age >= 0:
        raise InvalidRequest(f"max_age must be a number of seconds >= 0, got {raw[:100]!r}")
    now = gateway.clock()
    held = gateway.unread.get(tenant.name, email)
    if held is not None and max(0.0, now - held.at) < max_age:
        source = "cache" if held.source == "upstream" else held.source
        age = round(max(0.0, now - held.at), 3)
        return _json(_unread(email, held.count, source, age))
    async with tenant.gate.slot(tenant.name):
        count = await unread_count(tenant.client, email)
    at = gateway.clock()
    gateway.unread.record(tenant.name, email, count, at=at, source="upstream")
    return _json(_unread(email, count, "upstream", 0.0))


async def post_sso(request: web.Request) -> web.Response:
    tenant = _tenant(request, "sso")
    values = await _body(request)
    email = values.get("email")
    if not isinstance(email, str):
        raise InvalidRequest("the body must name one email")
    request[_AUDIT_USER] = v.check_email("email", email)
    async with tenant.gate.slot(tenant.name):
        got = await login_url(tenant.client, email)
    # The second API says how long its URL lives; the first says nothing (our setting).
    expires_in = got.expires_in
    if expires_in is None:
        expires_in = request.app[GATEWAY].sso_expires_in
    answer = SsoUrl(url=got.url, expires_in=expires_in)
    return _json(answer.model_dump(mode="json"))


async def post_openapi(request: web.Request) -> web.Response:
    name = request.match_info["operation"].strip("/")
    tenant = _tenant(request, scope_of(name))
    data, form = await _raw(request)
    planned = plan(tenant.name, tenant.api, name, data, form=form)
    client = tenant.client
    if isinstance(planned, SecondCall):
        assert isinstance(client, Exmail2Client)
        require_app(client, planned.operation.name)
        call = planned.call
        async with tenant.gate.slot(tenant.name):
            answer = await client.call(planned.operation.name, query=call.query, body=call.body)
        return _json(answer)
    assert isinstance(client, ExmailClient)
    form_values: dict[str, str | list[str]] = {}
    for key, value in planned.params:
        held = form_values.get(key)
        form_values[key] = value if held is None else [*_as_list(held), value]
    async with tenant.gate.slot(tenant.name):
        upstream = await client.call(planned.operation.name, form_values)
    return _json(upstream if upstream is not None else {})


# -- the application -------------------------------------------------------------------


async def get_openapi(request: web.Request) -> web.Response:
    return _json(openapi_document())


async def get_docs(request: web.Request) -> web.Response:
    return web.Response(
        text=docs_page(openapi_document()),
        content_type="text/html",
        charset="utf-8",
        headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
            "X-Content-Type-Options": "nosniff",
        },
    )


def _token_cache(request: web.Request) -> TokenCache:
    """The tenant's token cache: the first API's one token, or the ``?app=`` application's
    token of a second-API tenant (default ``directory``)."""
    tenant = _tenant(request, "token")
    app = request.query.get("app")
    if not isinstance(tenant.client, Exmail2Client):
        if app is not None:
            raise Problem(
                404, "unknown-app", "No such application",
                f"tenant {tenant.name!r} uses {API_NAMES['openapi']}: one token, no ?app=",
            )  # fmt: skip
        return tenant.client.tokens
    wanted = app if app is not None else App.DIRECTORY.value
    cache = tenant.client.tokens.get(App(wanted)) if wanted in set(App) else None
    if cache is None or App(wanted) not in tenant.client.apps:
        raise Problem(
            404, "unknown-app", "No such application",
            f"tenant {tenant.name!r} has no secret for application {wanted[:40]!r} "
            f"(configured: {', '.join(sorted(a.value for a in tenant.client.apps)) or 'none'})",
        )  # fmt: skip
    return cache


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    if _route(request) in ("/v1/openapi.json", "/v1/docs"):
        return await handler(request)  # the API's description: public
    refused = request.match_info.http_exception
    if isinstance(refused, web.HTTPMethodNotAllowed):
        # Which methods a path takes is in the public document: no key needed to learn it.
        answer = _not_allowed(request, refused)
        _report(request, None, answer.status, 0.0)
        return answer
    gateway = request.app[GATEWAY]
    started = time.monotonic()
    client = gateway.clients.authenticate(request.headers.get("Authorization", ""))
    try:
        if client is None:
            raise Problem(
                401, "unauthorized", "Authentication required",
                "send Authorization: Bearer <key> with a key of [[clients]]", headers=CHALLENGE,
            )  # fmt: skip
        request[_CLIENT] = client
        wait = gateway.bucket(client).take(gateway.monotonic())
        if wait > 0:
            raise Problem(
                429, "rate-limited", "Too many requests",
                f"client {client.name!r} is over {client.rate:g} calls/s (burst {client.burst})",
                headers={"Retry-After": retry_after(wait)},
            )  # fmt: skip
        try:
            response = await handler(request)
        except ExmailError as exc:
            raise from_exmail_error(exc) from exc
        except web.HTTPNotFound:  # the router's own: no route has this path
            raise Problem(
                404, "no-route", "Not found", f"no route {request.method} {request.path}"
            ) from None
        except Misdirected as exc:
            response = await forward_or_refuse(
                request,
                exc,
                gateway.forwarder,
                gateway.max_body_bytes,
                moving=exc.tenant in gateway.tenants,
            )
    except Problem as problem:
        response = problem.response(instance=request.path)
    _report(request, client, response.status, time.monotonic() - started)
    return response


def _report(request: web.Request, client: ApiClient | None, status: int, seconds: float) -> None:
    gateway = request.app[GATEWAY]
    route = _route(request)
    name = client.name if client is not None else "-"
    gateway.observer.api_request(name, route, status, seconds)
    if client is not None:
        gateway.clients.used(client, gateway.clock())
    fields: dict[str, Any] = {
        "client": name,
        "tenant": request.match_info.get("tenant"),
        "route": f"{request.method} {route}",
        "status": status,
        "seconds": round(seconds, 4),
    }
    user = request.get(_AUDIT_USER)
    if user is not None:
        fields["user"] = user
    audit.info("api call", extra=fields)


async def _gateway_off(request: web.Request) -> web.Response:
    return Problem(
        404, "gateway-off", "Not found", "the API gateway is off: no [[clients]] are configured"
    ).response(instance=request.path)


def _not_allowed(request: web.Request, refused: web.HTTPMethodNotAllowed) -> web.Response:
    allow = ", ".join(sorted(refused.allowed_methods))
    return Problem(
        405, "method-not-allowed", "Method not allowed",
        f"{request.path} takes {allow}, not {request.method}", headers={"Allow": allow},
    ).response(instance=request.path)  # fmt: skip


def gateway_app(gateway: Gateway | None) -> web.Application:
    """The ``/v1/`` sub-application; with no gateway (no ``[[clients]]``) every path is 404."""
    if gateway is None or not gateway.clients:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", _gateway_off)
        return app
    app = web.Application(middlewares=[_guard])
    app[GATEWAY] = gateway
    app.router.add_get("/tenants", list_tenants)
    app.router.add_get("/tenants/{tenant}/users/{email}", get_user)
    app.router.add_get("/tenants/{tenant}/users/{email}/unread", get_unread)
    app.router.add_post("/tenants/{tenant}/sso", post_sso)
    app.router.add_post("/tenants/{tenant}/openapi/{operation:.+}", post_openapi)
    app.add_routes(
        token_routes(
            _token_cache,
            prefix="/tenants/{tenant}",
            max_body=gateway.max_body_bytes,
            min_token_age=gateway.min_token_age,
        )
    )
    app.router.add_get("/openapi.json", get_openapi, allow_head=False)
    app.router.add_get("/docs", get_docs, allow_head=False)
    # No catch-all: the router's 405 (a known path, another method) and 404 reach the
    # middleware, which answers them as problem+json.
    return app
