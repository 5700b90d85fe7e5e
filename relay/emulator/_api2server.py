"""The second API's HTTP face: ``/cgi-bin/gettoken`` and every operation under ``/cgi-bin/``.

Handlers only move bytes: the query string and, on POST, the JSON body become one dict
(the body's keys win), ``access_token`` comes from the query only (the API has no
header auth), the token is checked against the operation's application, one rule of
``Api2State`` / ``_api2directory`` runs, and its payload is answered with ``errcode`` 0
and the documented ``errmsg`` (``ok``, ``created``, ``updated``, ``deleted``, and
``update`` for ``useroption/update``, as the doc spells it). Every refusal is HTTP 200
``{"errcode": <int>, "errmsg": "..."}``; an unknown ``/cgi-bin/`` path is HTTP 404.

Reads and deletes are GET; writes, searches and logs are POST with a JSON body. A POST
operation called with GET answers 43002 ("POST required"); GET operations take either.
``mail/newcount`` takes its parameters from the query, then from a JSON body (notes §6).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlencode

from aiohttp import web

from . import _api2directory as d
from . import _api2groups as g
from ._api2model import Tenant2
from ._api2state import Api2State
from ._errors import Api2Error
from ._faults import Fault
from ._http import API2, LISTENS, json_response, replica_of

__all__ = ["API2_OPERATIONS", "api2_fault", "api2_operation", "gettoken", "operation"]

Rule = Callable[[Api2State, Tenant2, dict[str, Any], web.Request], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class _Op:
    app: str
    method: Literal["GET", "POST"]
    errmsg: str
    rule: Rule


def _dir(fn: Callable[[Tenant2, dict[str, Any], float], dict[str, Any]]) -> Rule:
    return lambda state, tenant, params, request: fn(tenant, params, state.clock())


def _read(fn: Callable[[Tenant2, dict[str, Any]], dict[str, Any]]) -> Rule:
    return lambda state, tenant, params, request: fn(tenant, params)


def _login_url(
    state: Api2State, tenant: Tenant2, params: dict[str, Any], request: web.Request
) -> dict[str, Any]:
    userid, key = state.login_key(tenant, params)
    base = f"{request.url.origin()}/cgi-bin/login"
    query = urlencode(
        {"fun": "bizopenssologin", "method": "openapi", "userid": userid, "authkey": key},
        safe="@",
    )
    return {"login_url": f"{base}?{query}", "expires_in": int(state.login_ttl)}


def _log(kind: str) -> Rule:
    return lambda state, tenant, params, request: state.log(tenant, kind, params)


_DIRECTORY, _SSO, _NEWMAIL, _LOGS, _SETTINGS = "directory", "sso", "newmail", "logs", "settings"

API2_OPERATIONS: dict[str, _Op] = {
    "department/create": _Op(_DIRECTORY, "POST", "created", _dir(d.department_create)),
    "department/update": _Op(_DIRECTORY, "POST", "updated", _dir(d.department_update)),
    "department/delete": _Op(_DIRECTORY, "GET", "deleted", _dir(d.department_delete)),
    "department/list": _Op(_DIRECTORY, "GET", "ok", _read(d.department_list)),
    "department/search": _Op(_DIRECTORY, "POST", "ok", _read(d.department_search)),
    "user/create": _Op(_DIRECTORY, "POST", "created", _dir(d.user_create)),
    "user/update": _Op(_DIRECTORY, "POST", "updated", _dir(d.user_update)),
    "user/delete": _Op(_DIRECTORY, "GET", "deleted", _dir(d.user_delete)),
    "user/get": _Op(_DIRECTORY, "GET", "ok", _read(d.user_get)),
    "user/simplelist": _Op(
        _DIRECTORY, "GET", "ok", _read(lambda t, p: d.user_list(t, p, simple=True))
    ),
    "user/list": _Op(_DIRECTORY, "GET", "ok", _read(lambda t, p: d.user_list(t, p, simple=False))),
    "user/batchcheck": _Op(_DIRECTORY, "POST", "ok", _read(d.user_batchcheck)),
    "group/create": _Op(_DIRECTORY, "POST", "created", _dir(g.group_create)),
    "group/update": _Op(_DIRECTORY, "POST", "updated", _dir(g.group_update)),
    "group/delete": _Op(_DIRECTORY, "GET", "deleted", _dir(g.group_delete)),
    "group/get": _Op(_DIRECTORY, "GET", "ok", _read(g.group_get)),
    "tag/create": _Op(_DIRECTORY, "POST", "created", _read(g.tag_create)),
    "tag/update": _Op(_DIRECTORY, "POST", "updated", _read(g.tag_update)),
    "tag/delete": _Op(_DIRECTORY, "GET", "deleted", _read(g.tag_delete)),
    "tag/get": _Op(_DIRECTORY, "GET", "ok", _read(g.tag_get)),
    "tag/addtagusers": _Op(
        _DIRECTORY, "POST", "ok", _read(lambda t, p: g.tag_members(t, p, add=True))
    ),
    "tag/deltagusers": _Op(
        _DIRECTORY, "POST", "deleted", _read(lambda t, p: g.tag_members(t, p, add=False))
    ),
    "tag/list": _Op(_DIRECTORY, "GET", "ok", _read(lambda t, p: g.tag_list(t))),
    "service/get_login_url": _Op(_SSO, "GET", "ok", _login_url),
    "mail/newcount": _Op(_NEWMAIL, "GET", "ok", lambda s, t, p, r: s.newcount(t, p)),
    "log/mailstatus": _Op(_LOGS, "POST", "ok", _log("mailstatus")),
    "log/mail": _Op(_LOGS, "POST", "ok", _log("mail")),
    "log/login": _Op(_LOGS, "POST", "ok", _log("login")),
    "log/batchjob": _Op(_LOGS, "POST", "ok", _log("batchjob")),
    "log/operation": _Op(_LOGS, "POST", "ok", _log("operation")),
    "useroption/get": _Op(_SETTINGS, "POST", "ok", lambda s, t, p, r: s.useroption_get(t, p)),
    "useroption/update": _Op(
        _SETTINGS, "POST", "update", lambda s, t, p, r: s.useroption_update(t, p)
    ),
}
"""Every operation of the notes §4-§8: its app, its method, its success ``errmsg``."""


def api2_operation(path: str) -> str | None:
    """The operation a ``/cgi-bin/...`` path names (``gettoken`` too), else ``None``."""
    if not path.startswith("/cgi-bin/"):
        return None
    name = path.removeprefix("/cgi-bin/").strip("/").lower()
    return name if name == "gettoken" or name in API2_OPERATIONS else None


def _error(exc: Api2Error) -> web.Response:
    return json_response(exc.body())


async def _params(request: web.Request) -> dict[str, Any]:
    params: dict[str, Any] = {k.lower(): v for k, v in request.query.items()}
    params.pop("access_token", None)
    if request.method == "POST" and request.can_read_body:
        raw = await request.read()
        if raw.strip():
            try:
                body = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                raise Api2Error(47001, "json parse error") from None
            if not isinstance(body, dict):
                raise Api2Error(47001, "json parse error: the body is not an object")
            params.update({str(k).lower(): v for k, v in body.items()})
    return params


async def gettoken(request: web.Request) -> web.Response:
    state = request.app[API2]
    corpid = request.query.get("corpid", "")
    secret = request.query.get("corpsecret", "")
    try:
        if not corpid.strip():
            raise Api2Error(41002, "corpid missing")
        if not secret:
            raise Api2Error(41004, "corpsecret missing")
        token, expires_in = state.gettoken(corpid, secret)
    except Api2Error as exc:
        return _error(exc)
    # The request log (docs/emulator.md "Listen log"), keyed by corpid: who fetched when.
    request.app[LISTENS].token_issued(
        state.tenants[corpid.strip()].corpid,
        state.generation_of(token),
        replica=replica_of(request),
    )
    return json_response(
        {"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": expires_in}
    )


async def operation(request: web.Request) -> web.Response:
    name = request.match_info["operation"].strip("/").lower()
    spec = API2_OPERATIONS.get(name)
    if spec is None:
        return json_response({"errcode": 404, "errmsg": "not found"}, status=404)
    state = request.app[API2]
    try:
        if spec.method == "POST" and request.method != "POST":
            raise Api2Error(43002, "require POST method")
        tenant = state.authenticate(request.query.get("access_token"), spec.app)
        request.app[LISTENS].called(tenant.corpid, name, replica=replica_of(request))
        params = await _params(request)
        payload = spec.rule(state, tenant, params, request)
    except Api2Error as exc:
        return _error(exc)
    return json_response({"errcode": 0, "errmsg": spec.errmsg, **payload})


async def api2_fault(request: web.Request, fault: Fault) -> web.StreamResponse | None:
    """An armed fault's answer in the second API's shape; ``None`` when the kind has no
    API-2 form of its own (``http_500``, ``drop``, ``delay``: the shared path serves it).

    ``errcode_1002`` answers -1 "system busy"; ``invalid_token`` makes the presented
    token unknown and answers as for an unknown token (40014, or 40001 by setting);
    ``api_error`` answers the armed ``errcode`` (a number unless armed as a string) and
    ``error`` as ``errmsg``."""
    if fault.kind == "errcode_1002":
        return json_response({"errcode": -1, "errmsg": "system busy"})
    if fault.kind == "invalid_token":
        request.app[API2].revoke(request.query.get("access_token"))
        return json_response(request.app[API2].invalid_token().body())
    if fault.kind == "malformed":
        return web.Response(body=b'{"errcode": 0, "errmsg', content_type="application/json")
    if fault.kind == "api_error":
        code: int | str = fault.errcode
        if not fault.errcode_text and fault.errcode.strip().removeprefix("-").isdigit():
            code = int(fault.errcode)
        return json_response({"errcode": code, "errmsg": fault.error})
    return None
