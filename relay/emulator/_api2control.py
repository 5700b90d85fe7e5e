"""The control API of second-API tenants, under ``/_emulator/api2/``: JSON in, JSON out.

How tests and the demo drive those tenants: add one, change its directory (through the
same rules as the API, so a control change is an admin's call), deliver mail to a member
or mark it read (each calls the tenant's ``on_mail`` / ``on_unread`` seams with the
callback message's fields, see ``_api2model``), end tokens early, switch the token
rotation, save a tenant's callback URL (the "save settings" handshake first, see
``_api2callbacks``) and read what was sent, read the state. Bad requests answer 400
``{"error"}``; naming an unknown tenant, member or department answers 404 (with the
API's ``errcode`` when a rule refused).
``POST /_emulator/reset`` resets these tenants too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from . import _api2directory as directory
from ._api2callbacks import CALLBACKS
from ._api2model import Tenant2
from ._api2seed import API2_APPS, parse_api2_tenant, parse_callback
from ._api2state import TOKEN_ROTATIONS, Api2State
from ._control import _body, _obj, _string
from ._errors import Api2Error, ControlError, EmulatorError, EmulatorSeedError
from ._http import API2, json_response

__all__ = ["add_api2_control_routes"]

Handler = Callable[[web.Request, Any], Awaitable[Any]]
_ACTIONS = ("add", "mod", "del")
_NOT_FOUND = {60003, 60004, 60111}
_USER_FIELDS = (
    "name", "department", "position", "mobile", "tel", "extid",
    "gender", "enable", "slaves", "password", "cpwd_login",
)  # fmt: skip


def _tenant(state: Api2State, body: dict[str, Any], address: str | None = None) -> Tenant2:
    """The tenant named by ``corpid``, else owning ``address``'s domain, else the first."""
    corpid = body.get("corpid")
    if corpid is not None:
        if not isinstance(corpid, str) or corpid.strip() not in state.tenants:
            raise ControlError(f"no second-API tenant {corpid!r}", status=404)
        return state.tenants[corpid.strip()]
    if address:
        found = state.tenant_for_address(address)
        if found is None:
            raise ControlError(f"no second-API tenant owns the domain of {address!r}", status=404)
        return found
    if not state.tenants:
        raise ControlError("the emulator has no second-API tenant", status=404)
    return next(iter(state.tenants.values()))


def _action(body: dict[str, Any]) -> str:
    action = body.get("action")
    if action not in _ACTIONS:
        raise ControlError(f"'action' must be one of {list(_ACTIONS)}")
    return str(action)


async def _add_tenant(request: web.Request, body: Any) -> Any:
    state = request.app[API2]
    body = _obj(body)
    specs = body.get("tenants", [body])
    if not isinstance(specs, list):
        raise ControlError("'tenants' must be a list")
    try:
        seeds = [parse_api2_tenant(spec, f"tenants[{i}]") for i, spec in enumerate(specs)]
    except EmulatorSeedError as exc:
        raise ControlError(str(exc)) from None
    added = 0
    for seed in seeds:
        try:
            state.add_tenant(seed)
        except EmulatorError as exc:
            raise ControlError(f"{exc} (added before it: {added})") from None
        added += 1
    return {"added": added}


async def _department(request: web.Request, body: Any) -> Any:
    state = request.app[API2]
    body = _obj(body)
    action = _action(body)
    tenant = _tenant(state, body)
    params = {k: body[k] for k in ("id", "name", "parentid", "order") if k in body}
    now = state.clock()
    if action == "add":
        return directory.department_create(tenant, params, now)
    if action == "mod":
        directory.department_update(tenant, params, now)
    else:
        directory.department_delete(tenant, params, now)
    return {"id": params.get("id")}


async def _user(request: web.Request, body: Any) -> Any:
    state = request.app[API2]
    body = _obj(body)
    action = _action(body)
    userid = _string(body, "userid")
    unknown = set(body) - {"action", "userid", "corpid", "unread", *_USER_FIELDS}
    if unknown:
        raise ControlError(f"unknown field(s) {sorted(unknown)}")
    tenant = _tenant(state, body, userid)
    params = {k: body[k] for k in _USER_FIELDS if k in body}
    params["userid"] = userid
    now = state.clock()
    if action == "add":
        params.setdefault("name", userid.strip().lower().partition("@")[0])
        params.setdefault("password", "Emulator1")
        params.setdefault("department", [1])
        directory.user_create(tenant, params, now)
    elif action == "mod":
        directory.user_update(tenant, params, now)
    else:
        directory.user_delete(tenant, params, now)
    return {"userid": userid.strip().lower()}


def _mail_one(state: Api2State, spec: Any) -> dict[str, Any]:
    spec = _obj(spec)
    to = _string(spec, "to")
    for key in ("from", "title"):
        if spec.get(key) is not None and not isinstance(spec[key], str):
            raise ControlError(f"{key!r} must be a string")
    at = spec.get("time")
    if at is not None and (isinstance(at, bool) or not isinstance(at, int) or at < 0):
        raise ControlError("'time' must be unix seconds")
    _, fields = state.deliver_mail(
        to, sender=spec.get("from"), title=spec.get("title") or "Test mail", at=at
    )
    return {"mail_id": fields["MailID"], "count": fields["NewCount"]}


async def _mail(request: web.Request, body: Any) -> Any:
    state = request.app[API2]
    body = _obj(body)
    if "mails" in body:
        mails = body["mails"]
        if not isinstance(mails, list) or not mails:
            raise ControlError("'mails' must be a non-empty list")
        return {"mails": [_mail_one(state, m) for m in mails]}
    return _mail_one(state, body)


async def _read(request: web.Request, body: Any) -> Any:
    body = _obj(body)
    user = _string(body, "user")
    count = body.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ControlError("'count' must be a non-negative integer")
    _, fields = request.app[API2].mark_read(user, count)
    return {"user": fields["UserID"], "unread": fields["UnReadCount"]}


async def _expire(request: web.Request, body: Any) -> Any:
    state = request.app[API2]
    body = _obj(body) if body else {}
    corpid = _tenant(state, body).corpid if "corpid" in body else None
    app = body.get("app")
    if app is not None and app not in API2_APPS:
        raise ControlError(f"'app' must be one of {list(API2_APPS)}")
    return {"expired": state.expire_tokens(corpid, app)}


async def _settings(request: web.Request, body: Any) -> Any:
    state = request.app[API2]
    body = _obj(body) if body else {}
    if "token_rotation" in body:
        if body["token_rotation"] not in TOKEN_ROTATIONS:
            raise ControlError(f"'token_rotation' must be one of {list(TOKEN_ROTATIONS)}")
        state.set_token_rotation(body["token_rotation"])
    if "invalid_token_errcode" in body:
        code = body["invalid_token_errcode"]
        if code not in (40001, 40014) or isinstance(code, bool):
            raise ControlError("'invalid_token_errcode' must be 40001 or 40014")
        state.invalid_token_errcode = code
    return {
        "token_rotation": state.token_rotation,
        "token_ttl": state.token_ttl,
        "invalid_token_errcode": state.invalid_token_errcode,
    }


async def _callback(request: web.Request, body: Any) -> Any:
    """Save a tenant's callback (after the GET handshake, unless ``verify`` is false),
    or remove it with ``"url": null``."""
    state, hub = request.app[API2], request.app[CALLBACKS]
    body = _obj(body)
    tenant = _tenant(state, body)
    if "url" in body and body["url"] is None:
        tenant.callback = None
        return {"saved": False, "removed": True, "corpid": tenant.corpid}
    verify = body.get("verify", True)
    if not isinstance(verify, bool):
        raise ControlError("'verify' must be true or false")
    spec = {k: v for k, v in body.items() if k not in ("corpid", "verify")}
    try:
        config = parse_callback(spec)
    except EmulatorSeedError as exc:
        raise ControlError(str(exc)) from None
    checked = await hub.save(tenant, config, verify=verify)
    answer = {"corpid": tenant.corpid, "callback": config.describe(), "verification": checked}
    if checked is not None and not checked["ok"]:
        why = checked["error"] or f"HTTP {checked['status']} {checked['body'][:60]!r}"
        return json_response(
            {**answer, "saved": False, "error": f"the URL did not echo the plaintext: {why}"},
            status=400,
        )
    return {**answer, "saved": True}


async def _callbacks(request: web.Request) -> web.Response:
    corpid = request.query.get("corpid")
    try:
        since = int(request.query.get("since", "0"))
    except ValueError:
        return json_response({"error": "'since' must be an integer"}, status=400)
    return json_response(request.app[CALLBACKS].snapshot(corpid, since))


async def _callbacks_wait(request: web.Request, body: Any) -> Any:
    body = _obj(body) if body else {}
    timeout = body.get("timeout", 30)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 300:
        raise ControlError("'timeout' must be seconds in (0, 300]")
    return {"pending": await request.app[CALLBACKS].drain(float(timeout))}


def _route(handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        try:
            answer = await handler(request, await _body(request))
            return answer if isinstance(answer, web.Response) else json_response(answer)
        except ControlError as exc:
            return json_response({"error": str(exc)}, status=exc.status)
        except Api2Error as exc:
            status = 404 if exc.errcode in _NOT_FOUND else 400
            return json_response({**exc.body(), "error": str(exc)}, status=status)

    return handle


async def _state(request: web.Request) -> web.Response:
    return json_response(request.app[API2].snapshot())


def add_api2_control_routes(app: web.Application) -> None:
    app.router.add_post("/_emulator/api2/tenant", _route(_add_tenant))
    app.router.add_post("/_emulator/api2/department", _route(_department))
    app.router.add_post("/_emulator/api2/user", _route(_user))
    app.router.add_post("/_emulator/api2/mail", _route(_mail))
    app.router.add_post("/_emulator/api2/read", _route(_read))
    app.router.add_post("/_emulator/api2/tokens/expire", _route(_expire))
    app.router.add_post("/_emulator/api2/settings", _route(_settings))
    app.router.add_get("/_emulator/api2/state", _state)
    app.router.add_post("/_emulator/api2/callback", _route(_callback))
    app.router.add_get("/_emulator/api2/callbacks", _callbacks)
    app.router.add_post("/_emulator/api2/callbacks/wait", _route(_callbacks_wait))
