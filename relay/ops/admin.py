"""``/admin/v1/``: the admin API on the ops port, behind its own token.

Where it sits: a sub-application of :func:`relay.ops.http.build_app`; the handlers are in
:mod:`relay.ops.admin_routes`, the document in :mod:`relay.ops.admin_openapi`. It does
over HTTP what ``exmail-relay deadletters``, ``endpoint`` and ``journal check`` do on a
journal file, on every replica at once (:mod:`relay.ops.admin_peers`), and asks an api2
tenant's directory poller, on the replica that runs it, to confirm a held listing or to
poll now (:mod:`relay.ops.admin_directory`).

- **Its own token.** ``Authorization: Bearer <[http] admin_token>``, never a
  ``[[clients]]`` key nor the status page's ``auth_token``. ``admin_token_file`` may list
  several (a rotation; :mod:`relay.core.bearer`), each accepted, and is read again when
  it changes (:mod:`relay.ops.token_file`). The offered token's SHA-256 is compared with
  every accepted one's in constant time (:meth:`~relay.core.bearer.TokenSet.match`).
  No header: 401 with a challenge; another token: 403. Without ``admin_token`` every
  path answers 404 ``admin-off``. ``/admin/v1/openapi.json`` is public.
- **Errors are problems** (RFC 9457, :class:`relay.gateway.problems.Problem`), with the
  gateway's ``urn:exmail-relay:problem:`` types.
- **Audit.** Every mutating call writes one ``relay.audit`` line on each replica that
  applies it: who (:func:`caller`: ``admin:`` and the token's name in the file, or the
  :func:`fingerprint` of an unnamed token, 12 hex digits; a forwarded call names the
  original caller and the replica it came through), what (the route and its filter), and
  the result or the problem (a refused token too: ``anonymous`` or the offered token's
  fingerprint). Never the token.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web

from relay.core.bearer import BearerToken, TokenSource, header_bytes
from relay.gateway.forwarding import VIA_NAME, OwnerLookup
from relay.gateway.problems import Problem
from relay.gateway.request_body import parse_json, read_body
from relay.journal import Journal
from relay.ops.admin_peers import ACTOR_HEADER, Peers
from relay.runtime.polling import DirectoryPollers

__all__ = [
    "ADMIN",
    "WHAT",
    "AdminApi",
    "actor_of",
    "admin_off_app",
    "asked",
    "audit",
    "caller",
    "fingerprint",
    "guard",
    "hopped",
    "json_answer",
    "json_body",
    "write_audit",
]

audit = logging.getLogger("relay.audit")
log = logging.getLogger("relay.admin")

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="exmail-relay admin"'}
# A fingerprint (12 hex digits) or a token's name (relay.core.bearer).
_ACTOR = re.compile(r"^admin:[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_PUBLIC = frozenset({"/admin/v1/openapi.json"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def fingerprint(token: str) -> str:
    """Who called, for the audit line: names the token without revealing it."""
    return "admin:" + hashlib.sha256(header_bytes(token)).hexdigest()[:12]


def caller(token: BearerToken) -> str:
    """An accepted token for the audit line: ``admin:<name>``, or its fingerprint."""
    return fingerprint(token.value) if token.name is None else f"admin:{token.name}"


@dataclass(slots=True)
class AdminApi:
    """What the admin API works on. ``endpoints``: the configured ``[[webhooks]]`` names;
    ``configured``: the sinks this relay runs; ``shards``: the ownership document.
    Directory polls: ``tenants`` the enabled tenants, ``polled`` those whose directories
    are polled (on some replica), ``pollers`` this replica's (None: none), ``owner_of``
    the replica that polls a tenant not polled here (None: nobody, or this one)."""

    tokens: TokenSource = field(repr=False)
    journal: Journal
    peers: Peers
    endpoints: tuple[str, ...] = ()
    configured: frozenset[str] = frozenset()
    shards: Callable[[], Mapping[str, Any]] = dict
    max_body_bytes: int = 64 * 1024
    tenants: frozenset[str] = frozenset()
    polled: frozenset[str] = frozenset()
    pollers: DirectoryPollers | None = None
    owner_of: OwnerLookup = lambda tenant: None
    clock: Callable[[], float] = time.time

    @property
    def me(self) -> str:
        return self.peers.me

    def match(self, offered: str) -> BearerToken | None:
        """The accepted token ``offered`` is (the file's tokens as they are now)."""
        return self.tokens.current().match(offered)


ADMIN: web.AppKey[AdminApi] = web.AppKey("admin", AdminApi)
WHAT: web.RequestKey[dict[str, Any]] = web.RequestKey("admin_what", dict)
"""The request key where a mutating handler puts what it was asked, for the audit line."""


def asked(request: web.Request) -> dict[str, Any]:
    """What a mutating handler was asked (:data:`WHAT`), for its audit line."""
    what: dict[str, Any] = request.get(WHAT) or {}
    return what


def json_answer(data: object, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, headers={"Cache-Control": "no-store"})


async def json_body(request: web.Request, known: frozenset[str]) -> dict[str, Any]:
    """The request's JSON object (no body: ``{}``), only ``known`` fields; it is what
    the call was asked, for its audit line (:data:`WHAT`)."""
    raw = await read_body(request, request.app[ADMIN].max_body_bytes)
    data = parse_json(raw) if raw.strip() else {}
    if not isinstance(data, dict):
        raise Problem(400, "invalid-request", "Invalid request", "the body must be a JSON object")
    unknown = sorted(set(data) - known)
    if unknown:
        raise Problem(
            400, "invalid-request", "Invalid request", f"unknown field(s): {', '.join(unknown)}"
        )
    request[WHAT] = dict(data)
    return data


def hopped(request: web.Request) -> bool:
    """A call another replica forwarded here: answered from this replica's journal only."""
    return any(VIA_NAME in value for value in request.headers.getall("Via", []))


_AUTHENTICATED: Final = web.RequestKey("relay.admin.authenticated", bool)
_CALLER: Final = web.RequestKey("relay.admin.caller", str)


def actor_of(request: web.Request) -> str:
    """The caller: the accepted token's name or fingerprint (:func:`caller`); on a
    forwarded call that passed the token check, the original caller's (a refused call's
    headers are the caller's word only)."""
    forwarded = request.headers.get(ACTOR_HEADER, "")
    if request.get(_AUTHENTICATED) and hopped(request) and _ACTOR.match(forwarded):
        return forwarded
    known: str | None = request.get(_CALLER)
    if known is not None:
        return known
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return "anonymous"
    return fingerprint(token.strip())


def _via(request: web.Request) -> str | None:
    if not request.get(_AUTHENTICATED):
        return None
    for value in request.headers.getall("Via", []):
        if VIA_NAME + "-" in value:
            return value.rsplit(VIA_NAME + "-", 1)[1].strip()[:63]
    return None


def _authenticate(request: web.Request, admin: AdminApi) -> BearerToken:
    header = request.headers.get("Authorization", "")
    scheme, _, offered = header.partition(" ")
    if scheme.lower() != "bearer" or not offered.strip():
        raise Problem(
            401, "unauthorized", "Authentication required",
            "send Authorization: Bearer <[http] admin_token>", headers=CHALLENGE,
        )  # fmt: skip
    token = admin.match(offered.strip())
    if token is None:
        raise Problem(
            403, "forbidden", "Not the admin token",
            "this token does not open the admin API (a [[clients]] key never does)",
        )  # fmt: skip
    return token


def write_audit(
    request: web.Request, admin: AdminApi, what: Mapping[str, Any], result: object
) -> None:
    """One audit line for a mutating call (``POST``): who, what, and how it ended."""
    audit.info(
        "admin call",
        extra={
            "actor": actor_of(request),
            "via": _via(request),
            "replica": admin.me,
            "route": f"{request.method} {request.path}",
            "what": dict(what),
            "result": result,
        },
    )


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    admin = request.app[ADMIN]
    try:
        if request.path in _PUBLIC:
            return await handler(request)
        refused = request.match_info.http_exception
        request[_CALLER] = caller(_authenticate(request, admin))
        request[_AUTHENTICATED] = True
        if isinstance(refused, web.HTTPMethodNotAllowed):
            allow = ", ".join(sorted(refused.allowed_methods))
            raise Problem(
                405, "method-not-allowed", "Method not allowed",
                f"{request.path} takes {allow}, not {request.method}", headers={"Allow": allow},
            )  # fmt: skip
        try:
            return await handler(request)
        except web.HTTPNotFound:
            raise Problem(
                404, "no-route", "Not found", f"no route {request.method} {request.path}"
            ) from None
    except Problem as problem:
        if request.method == "POST" and problem.status != 405:  # refused calls too
            result = {"problem": problem.kind, "status": problem.status}
            write_audit(request, admin, asked(request), result)
        return problem.response(instance=request.path)
    except Exception as exc:  # a journal or peer failure: still one audit line, a 500 problem
        if request.method == "POST":
            write_audit(request, admin, asked(request), {"error": type(exc).__name__})
        log.exception("admin call failed", extra={"route": request.path})
        return Problem(
            500, "internal-error", "Internal error", f"the call failed: {type(exc).__name__}"
        ).response(instance=request.path)


async def _admin_off(request: web.Request) -> web.Response:
    return Problem(
        404, "admin-off", "Not found",
        "the admin API is off: set [http] admin_token (or admin_token_file) to turn it on",
    ).response(instance=request.path)  # fmt: skip


def admin_off_app() -> web.Application:
    """``/admin/v1/`` with no admin token: every path is 404 ``admin-off``."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _admin_off)
    return app
