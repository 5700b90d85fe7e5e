"""The emulator's HTTP face: token, OpenApi, faults middleware, ``build_app``.

``build_app`` also mounts the SSO login page (``_login``), the second API under
``/cgi-bin/`` (``_api2server``) and the control API (``_control``, ``_api2control``).

Handlers only move bytes: they turn query/form parameters (names matched
case-insensitively, repeated names as lists) into Python values, call one method of the
pure state, and render its answer or its ``ApiError`` (HTTP 200 + ``{"errcode", "error"}``).
Writes answer an empty body. ``listen`` holds the request on the ``ListenHub``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from . import _directory
from ._api2callbacks import CALLBACKS, CallbackHub
from ._api2control import add_api2_control_routes
from ._api2server import api2_fault, api2_operation, gettoken, operation
from ._api2state import Api2State
from ._control import add_control_routes
from ._errors import ApiError, invalid_parameter, invalid_token, temporarily_unavailable
from ._faults import Fault, FaultPlan
from ._http import (
    API2,
    CONFIG,
    COUNTERS,
    FAULTS,
    HUB,
    LISTENS,
    STATE,
    ListenFormat,
    ServerConfig,
    dumps,
    json_response,
    peer_of,
    replica_of,
)
from ._listen import ListenHub
from ._listenlog import ListenLog, Outcome
from ._login import login
from ._model import Company
from ._state import EmulatorState

__all__ = ["build_app"]


def _error(exc: ApiError) -> web.Response:
    return json_response(exc.body())


class Params:
    """Request parameters from the query string and the form body, names lower-cased."""

    __slots__ = ("_values",)

    def __init__(self, values: dict[str, list[str]]) -> None:
        self._values = values

    @classmethod
    async def read(cls, request: web.Request) -> Params:
        values: dict[str, list[str]] = {}
        for key, value in request.query.items():
            values.setdefault(key.lower(), []).append(value)
        if request.method == "POST" and request.can_read_body:
            form = await request.post()
            for key, item in form.items():
                if isinstance(item, str):
                    values.setdefault(key.lower(), []).append(item)
        return cls(values)

    def has(self, name: str) -> bool:
        return name in self._values

    def one(self, name: str) -> str | None:
        values = self._values.get(name)
        return values[-1] if values else None

    def many(self, name: str) -> list[str]:
        return self._values.get(name, [])

    def text(self, name: str) -> str:
        return self.one(name) or ""

    def integer(self, name: str, *, default: int | None = None) -> int | None:
        raw = self.one(name)
        if raw is None or not raw.strip():
            return default
        try:
            return int(raw.strip())
        except ValueError:
            raise invalid_parameter(f"{name} must be an integer, got {raw!r}") from None


def bearer_token(request: web.Request, params: Params) -> str | None:
    header = request.headers.get("Authorization", "").strip()
    if header:
        scheme, _, rest = header.partition(" ")
        if scheme.lower() == "bearer":
            return rest.strip() or None
        if scheme.lower() != "basic":
            return header
    return params.one("access_token")


# -- OpenApi operations -------------------------------------------------------------------

Handler = Callable[[web.Request, Company, Params], Awaitable[web.Response]]
_EMPTY = b""
_SYNC_ACTIONS = {1: "del", 2: "add", 3: "mod"}  # user/sync and party/sync (both texts agree)


def _empty() -> web.Response:
    return web.Response(body=_EMPTY)


def _action(params: Params) -> Any:
    code = params.integer("action")
    if code is None:
        raise invalid_parameter("Action is required")
    if code not in _SYNC_ACTIONS:
        raise invalid_parameter(f"Action {code} is not one of 1 (DEL), 2 (ADD), 3 (MOD)")
    return _SYNC_ACTIONS[code]


def _alias(params: Params) -> str:
    alias = params.one("alias")
    if alias is None or not alias.strip():
        raise invalid_parameter("Alias is required")
    return alias


async def _authkey(request: web.Request, company: Company, params: Params) -> web.Response:
    return json_response({"AuthKey": request.app[STATE].issue_authkey(company, _alias(params))})


async def _user_get(request: web.Request, company: Company, params: Params) -> web.Response:
    return json_response(_directory.user_get(company, _alias(params)))


async def _user_sync(request: web.Request, company: Company, params: Params) -> web.Response:
    action = _action(params)
    fields: dict[str, Any] = {}
    if action != "del":
        for name in ("name", "position", "tel", "mobile", "extid"):
            fields[name] = params.one(name)
        fields["gender"] = params.integer("gender")
        fields["open_type"] = params.integer("opentype")
        md5 = params.integer("md5")
        if md5 not in (None, 0, 1):
            raise invalid_parameter("Md5 must be 0 (plain) or 1 (md5)")
        if params.has("partypath"):
            fields["parties"] = params.many("partypath")
        if params.has("slave"):
            fields["slaves"] = params.many("slave")
    request.app[STATE].user_sync(company, action, params.text("alias"), **fields)
    return _empty()


async def _user_list(request: web.Request, company: Company, params: Params) -> web.Response:
    ver = params.integer("ver", default=0) or 0
    return json_response(request.app[STATE].user_list(company, ver))


async def _newcount(request: web.Request, company: Company, params: Params) -> web.Response:
    account = company.account(_alias(params))
    return json_response({"Alias": account.alias, "NewCount": account.unread})


async def _party_sync(request: web.Request, company: Company, params: Params) -> web.Response:
    action = _action(params)
    state = request.app[STATE]
    state.party_sync(company, action, params.text("srcpath"), params.text("dstpath"))
    return _empty()


async def _party_list(request: web.Request, company: Company, params: Params) -> web.Response:
    return json_response(_directory.party_list(company, params.text("partypath")))


async def _partyuser_list(request: web.Request, company: Company, params: Params) -> web.Response:
    return json_response(_directory.partyuser_list(company, params.text("partypath")))


async def _user_check(request: web.Request, company: Company, params: Params) -> web.Response:
    return json_response(_directory.user_check(company, params.many("email")))


async def _group_add(request: web.Request, company: Company, params: Params) -> web.Response:
    _directory.group_add(
        company,
        params.one("group_name"),
        params.one("group_admin"),
        params.one("status"),
        params.many("members"),
    )
    return _empty()


async def _group_delete(request: web.Request, company: Company, params: Params) -> web.Response:
    _directory.group_delete(company, params.one("group_alias"))
    return _empty()


def _members_handler(add: bool) -> Handler:
    async def handle(request: web.Request, company: Company, params: Params) -> web.Response:
        _directory.group_members(company, params.one("group_alias"), params.many("members"), add)
        return _empty()

    return handle


def _allow_handler(add: bool) -> Handler:
    async def handle(request: web.Request, company: Company, params: Params) -> web.Response:
        allow = params.many("allow_list")
        _directory.group_allow_list(company, params.one("group_alias"), allow, add)
        return _empty()

    return handle


def _wx_handler(on: bool) -> Handler:
    async def handle(request: web.Request, company: Company, params: Params) -> web.Response:
        _directory.set_wx_token(company, _alias(params), on)
        return _empty()

    return handle


def render_listen(items: list[dict[str, Any]], listen_format: ListenFormat) -> bytes:
    if len(items) == 1:
        return dumps(items[0])
    if listen_format == "array":
        return dumps(items)
    separator = b"\n" if listen_format == "lines" else b""
    return separator.join(dumps(i) for i in items)


async def _listen(request: web.Request, company: Company, params: Params) -> web.Response:
    """A logged listen: the listen log records who held it, when, and how it ended."""
    log = request.app[LISTENS]
    listen_id = log.opened(
        company.admin,
        replica=replica_of(request),
        peer=peer_of(request),
        token=company.token_generation,
    )
    outcome: Outcome = "error"
    try:
        outcome, response = await _hold_listen(request, company, params)
        return response
    except ApiError as exc:
        if exc.errcode == "1200":  # its token was superseded or revoked while it was held
            outcome = "token_rejected"
        raise
    except asyncio.CancelledError:
        outcome = "client_gone"  # aiohttp cancels the handler when the peer disconnects
        raise
    finally:
        log.closed(listen_id, outcome)


async def _hold_listen(
    request: web.Request, company: Company, params: Params
) -> tuple[Outcome, web.Response]:
    state, hub, config = request.app[STATE], request.app[HUB], request.app[CONFIG]
    token = bearer_token(request, params)
    ver = params.integer("ver", default=0) or 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + config.hold
    state.listen_opened(company, token)
    while True:
        items = state.take_listen(company, ver, config.max_batch)
        if not items:
            remaining = deadline - loop.time()
            if remaining > 0 and await hub.wait(company.admin, ver, remaining):
                company = state.authenticate(token)  # a reset or new token ends the hold
                continue
            items = state.take_listen(company, ver, config.max_batch)  # woken at the deadline
            if not items:
                return "keepalive", json_response({"Ret": 0})
        if request.transport is None or request.transport.is_closing():
            state.requeue(company, items)  # the client is gone: keep its pushes
            return "client_gone", web.Response(body=_EMPTY)  # written nowhere
        if company.pending:
            hub.notify(company, False)  # hand the rest to the next waiter
        state.handed_out(company, items, token)
        return "data", web.Response(
            body=render_listen(items, config.listen_format),
            content_type="application/json",
            charset="utf-8",
        )


OPERATIONS: dict[str, Handler] = {
    "mail/authkey": _authkey,
    "listen": _listen,
    "user/get": _user_get,
    "user/sync": _user_sync,
    "user/list": _user_list,
    "mail/newcount": _newcount,
    "party/sync": _party_sync,
    "party/list": _party_list,
    "partyuser/list": _partyuser_list,
    "user/check": _user_check,
    "group/add": _group_add,
    "group/delete": _group_delete,
    "group/addmember": _members_handler(True),
    "group/deletemember": _members_handler(False),
    "group/addallowlist": _allow_handler(True),
    "group/delallowlist": _allow_handler(False),
    "user/openwxtoken": _wx_handler(True),
    "user/closewxtoken": _wx_handler(False),
    "user/close/wxtoken": _wx_handler(False),  # the v1.4 text's example spells it so
}


async def openapi(request: web.Request) -> web.Response:
    operation = request.match_info["operation"].strip("/").lower()
    handler = OPERATIONS.get(operation)
    if handler is None:
        return json_response({"errcode": "404", "error": "not_found"}, status=404)
    params = await Params.read(request)
    try:
        company = request.app[STATE].authenticate(bearer_token(request, params))
        return await handler(request, company, params)
    except ApiError as exc:
        return _error(exc)


# -- token ----------------------------------------------------------------------


async def token(request: web.Request) -> web.Response:
    params = await Params.read(request)
    client_id, client_secret = params.one("client_id"), params.one("client_secret")
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return _error(invalid_parameter("Authorization: Basic is not base64(id:secret)"))
        client_id, _, client_secret = decoded.partition(":")
    state = request.app[STATE]
    try:
        if (params.one("grant_type") or "").strip() != "client_credentials":
            raise invalid_parameter("grant_type must be client_credentials")
        if not client_id or client_secret is None:
            raise invalid_parameter("client_id and client_secret are required")
        access_token = state.issue_token(client_id.strip(), client_secret.strip())
    except ApiError as exc:
        return _error(exc)
    company = state.authenticate(access_token)
    request.app[LISTENS].token_issued(
        company.admin, company.token_generation, replica=replica_of(request)
    )
    return json_response(
        {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": state.token_ttl,
            "refresh_token": "",
        }
    )


# -- faults and counters ----------------------------------------------------------------------


def _counter_key(path: str) -> str:
    if path.startswith("/openapi/"):
        operation = path[len("/openapi/") :].strip("/").lower()
        return "/openapi/" + operation if operation in OPERATIONS else "/openapi/<unknown>"
    if api2_operation(path) is not None:
        return "/cgi-bin/" + path.removeprefix("/cgi-bin/").strip("/").lower()
    return path if path in ("/cgi-bin/token", "/cgi-bin/login") else "<other>"


async def _apply_fault(request: web.Request, fault: Fault) -> web.StreamResponse:
    if fault.kind == "http_500":
        return json_response({"error": "injected http_500"}, status=500)
    if fault.kind == "errcode_1002":
        return _error(temporarily_unavailable())
    if fault.kind == "invalid_token":
        params = await Params.read(request)
        state = request.app[STATE]
        with contextlib.suppress(ApiError):  # no valid token: the answer is the same
            state.invalidate_token(state.authenticate(bearer_token(request, params)))
        return _error(invalid_token())
    if fault.kind == "malformed":
        return web.Response(body=b'{"Ret": 0, "Ver', content_type="application/json")
    if fault.kind == "api_error":
        return json_response({"errcode": fault.errcode, "error": fault.error})
    # drop: promise a body, send part of it, then cut the connection.
    response = web.StreamResponse()
    response.content_type = "application/json"
    response.content_length = 64
    await response.prepare(request)
    await response.write(b'{"Ret": 0, "Pad')
    if request.transport is not None:
        request.transport.close()
    return response


@web.middleware
async def faults_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    path = request.path
    if path.startswith("/_emulator/"):
        return await handler(request)
    request.app[COUNTERS][_counter_key(path)] += 1
    if path.startswith("/openapi/"):
        # Logged before it is judged or faulted: a refused call still left its sender.
        # The header's token only: reading the form here would consume the body.
        owner = request.app[STATE].token_owner(bearer_token(request, Params({})))
        if owner is not None:
            operation = path.removeprefix("/openapi/").strip("/").lower()
            request.app[LISTENS].called(owner, operation, replica=replica_of(request))
    fault = request.app[FAULTS].take(path)
    if fault is None:
        return await handler(request)
    if fault.kind == "delay":
        await asyncio.sleep(fault.seconds)
        return await handler(request)
    if api2_operation(path) is not None and (answer := await api2_fault(request, fault)):
        return answer
    return await _apply_fault(request, fault)


def build_app(
    state: EmulatorState,
    *,
    hold: float = 25.0,
    max_batch: int = 100,
    listen_format: ListenFormat = "array",
    listen_log: int = 1000,
    api2: Api2State | None = None,
) -> web.Application:
    """An aiohttp application serving ``state``: token, OpenApi, login and control API.
    ``listen_log``: finished listens and token fetches kept per company (a ring buffer);
    ``api2``: the second API's tenants (default: those of ``state``'s seed)."""
    if hold < 0:
        raise ValueError("hold must not be negative")
    if max_batch < 1:
        raise ValueError("max_batch must be at least 1")
    if listen_format not in ("array", "concat", "lines"):
        raise ValueError("listen_format must be 'array', 'concat' or 'lines'")
    app = web.Application(middlewares=[faults_middleware], client_max_size=64 * 1024 * 1024)
    app[STATE] = state
    app[HUB] = ListenHub(state)
    app[CONFIG] = ServerConfig(hold=hold, max_batch=max_batch, listen_format=listen_format)
    app[FAULTS] = FaultPlan()
    app[COUNTERS] = Counter()
    app[LISTENS] = ListenLog(size=listen_log)
    app[API2] = api2 if api2 is not None else Api2State(state.seed.api2, clock=state.clock)
    app[CALLBACKS] = CallbackHub(app[API2])  # sends the api2 tenants' callbacks; owns its tasks
    app.cleanup_ctx.append(app[CALLBACKS].context)
    for method in ("GET", "POST"):
        app.router.add_route(method, "/cgi-bin/token", token)
        app.router.add_route(method, "/cgi-bin/login", login)
        app.router.add_route(method, "/cgi-bin/gettoken", gettoken)
        app.router.add_route(method, "/openapi/{operation:.+}", openapi)
        app.router.add_route(method, "/cgi-bin/{operation:.+}", operation)
    add_control_routes(app)
    add_api2_control_routes(app)
    app.on_shutdown.append(_close_hub)
    return app


async def _close_hub(app: web.Application) -> None:
    app[HUB].close()
