"""The control API under ``/_emulator/``: how tests, benchmarks and the demo drive the
emulator. JSON in, JSON out, no token. Bad requests answer 400 ``{"error": "..."}``;
requests naming an unknown account or department answer 404.

Directory changes go through the same state methods as the OpenApi (same rules, same
version bumps), so a control change is indistinguishable from an admin's API call.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ._api2callbacks import CALLBACKS
from ._errors import ApiError, ControlError, EmulatorSeedError
from ._http import API2, COUNTERS, FAULTS, HUB, LISTENS, STATE, json_response
from ._model import Company
from ._seed import parse_company, tenants_seed
from ._state import EmulatorState, api_error_status

__all__ = ["add_control_routes"]

ControlHandler = Callable[[web.Request, Any], Awaitable[Any]]

_PROFILE = {  # control field -> user_sync keyword
    "name": "name",
    "gender": "gender",
    "position": "position",
    "tel": "tel",
    "mobile": "mobile",
    "extid": "extid",
    "open_type": "open_type",
    "parties": "parties",
    "slaves": "slaves",
}
_ACTIONS = ("add", "mod", "del")


async def _body(request: web.Request) -> Any:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ControlError(f"the body is not valid JSON: {exc}") from None
    # JSON may escape a lone surrogate ("\\ud800"), which no UTF-8 answer can carry: a
    # mail holding one would be handed out by listen and then fail to encode. Refuse
    # it here, before anything is queued.
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ControlError(
            "the body holds text that is not valid Unicode (a lone surrogate)"
        ) from None
    return body


def _obj(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ControlError("expected a JSON object")
    return body


def _string(body: dict[str, Any], key: str, *, required: bool = True) -> str:
    value = body.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise ControlError(f"{key!r} must be a non-empty string")
    return value


def _company(state: EmulatorState, body: dict[str, Any], address: str | None) -> Company:
    """The company named by ``company`` (admin or domain), else by the address, else the
    only/first one."""
    name = body.get("company")
    if name is not None:
        if not isinstance(name, str):
            raise ControlError("'company' must be an admin address or a domain")
        found = state.companies.get(name.strip().lower()) or state.company_for_address(
            name if "@" in name else f"x@{name}"
        )
        if found is None:
            raise ControlError(f"no company {name!r}", status=404)
        return found
    if address:
        found = state.company_for_address(address)
        if found is None:
            raise ControlError(f"no company owns the domain of {address!r}", status=404)
        return found
    if not state.companies:
        raise ControlError("the emulator has no company", status=404)
    return next(iter(state.companies.values()))


def _mail_one(state: EmulatorState, spec: Any) -> str:
    spec = _obj(spec)
    to = _string(spec, "to")
    fields = {k: spec.get(k) for k in ("sender", "subject", "summary") if spec.get(k) is not None}
    for key, value in fields.items():
        if not isinstance(value, str):
            raise ControlError(f"{key!r} must be a string")
    return state.deliver_mail(
        to,
        sender=fields.get("sender"),
        subject=fields.get("subject", "Test mail"),
        summary=fields.get("summary", ""),
    )


async def _mail(request: web.Request, body: Any) -> Any:
    state = request.app[STATE]
    body = _obj(body)
    if "mails" in body:
        mails = body["mails"]
        if not isinstance(mails, list) or not mails:
            raise ControlError("'mails' must be a non-empty list")
        return {"mail_ids": [_mail_one(state, m) for m in mails]}
    return {"mail_id": _mail_one(state, body)}


async def _read(request: web.Request, body: Any) -> Any:
    body = _obj(body)
    user = _string(body, "user")
    count = body.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int):
        raise ControlError("'count' must be an integer")
    return {"user": user.strip().lower(), "unread": request.app[STATE].mark_read(user, count)}


def _action(body: dict[str, Any]) -> Any:
    action = body.get("action")
    if action not in _ACTIONS:
        raise ControlError(f"'action' must be one of {list(_ACTIONS)}")
    return action


async def _user(request: web.Request, body: Any) -> Any:
    state = request.app[STATE]
    body = _obj(body)
    action = _action(body)
    alias = _string(body, "alias")
    unknown = set(body) - {"action", "alias", "company", "unread", *_PROFILE}
    if unknown:
        raise ControlError(f"unknown field(s) {sorted(unknown)}")
    fields = {kw: body[key] for key, kw in _PROFILE.items() if key in body}
    for key in ("parties", "slaves"):
        value = fields.get(key)
        if value is not None and (
            not isinstance(value, list) or not all(isinstance(v, str) for v in value)
        ):
            raise ControlError(f"{key!r} must be a list of strings")
    company = _company(state, body, alias)
    state.user_sync(company, action, alias, **fields)
    if "unread" in body and action != "del":
        unread = body["unread"]
        if isinstance(unread, bool) or not isinstance(unread, int) or unread < 0:
            raise ControlError("'unread' must be a non-negative integer")
        company.account(alias).unread = unread
    return {"ver": company.ver}


async def _party(request: web.Request, body: Any) -> Any:
    state = request.app[STATE]
    body = _obj(body)
    action = _action(body)
    path = _string(body, "path")
    company = _company(state, body, None)
    if action == "mod":
        state.party_sync(company, "mod", path, _string(body, "dst"))
    else:
        state.party_sync(company, action, "", path)
    return {"ver": company.ver}


async def _add_company(request: web.Request, body: Any) -> Any:
    state = request.app[STATE]
    body = _obj(body)
    specs = body.get("companies", [body])
    if not isinstance(specs, list):
        raise ControlError("'companies' must be a list")
    try:
        seeds = [parse_company(spec, f"companies[{i}]") for i, spec in enumerate(specs)]
    except EmulatorSeedError as exc:
        raise ControlError(str(exc)) from None
    added = []
    for seed in seeds:
        try:
            added.append(state.add_company(seed).admin)
        except ApiError as exc:
            raise ControlError(f"{exc.detail} (added before it: {len(added)})") from None
    return {"added": len(added)}


def _count(body: dict[str, Any], key: str, default: int, low: int) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ControlError(f"{key!r} must be an integer >= {low}")
    return value


async def _add_tenants(request: web.Request, body: Any) -> Any:
    """``count`` generated companies (``tenants_seed``); keys are ``<prefix><NN>-key``."""
    state = request.app[STATE]
    body = _obj(body)
    prefix = body.get("prefix", "t")
    if not isinstance(prefix, str):
        raise ControlError("'prefix' must be a string")
    count = _count(body, "count", 1, 1)
    if count > 10000:
        raise ControlError("'count' must be at most 10000")
    try:
        seeds = tenants_seed(
            count,
            users=_count(body, "users", 3, 0),
            prefix=prefix,
            first=_count(body, "first", 1, 0),
        )
    except EmulatorSeedError as exc:
        raise ControlError(str(exc)) from None
    added = []
    for seed in seeds:
        try:
            added.append(state.add_company(seed))
        except ApiError as exc:
            raise ControlError(f"{exc.detail} (added before it: {len(added)})") from None
    return {
        "added": len(added),
        "companies": [{"admin": c.admin, "domain": c.domains[0]} for c in added],
    }


async def _faults(request: web.Request, body: Any) -> Any:
    fault = request.app[FAULTS].arm(body)
    return {"armed": fault.kind, "faults": request.app[FAULTS].describe()}


async def _reset(request: web.Request, body: Any) -> Any:
    body = _obj(body) if body else {}
    empty = bool(body.get("empty", False))
    request.app[STATE].reset(empty=empty)
    request.app[API2].reset(empty=empty)
    request.app[CALLBACKS].clear()
    request.app[FAULTS].clear()
    request.app[COUNTERS].clear()
    request.app[LISTENS].clear()
    request.app[HUB].wake_all()
    return {"companies": len(request.app[STATE].companies)}


def _route(handler: ControlHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        try:
            return json_response(await handler(request, await _body(request)))
        except ControlError as exc:
            return json_response({"error": str(exc)}, status=exc.status)
        except ApiError as exc:
            body = {**exc.body(), "error": str(exc)}
            return json_response(body, status=api_error_status(exc))

    return handle


async def _state(request: web.Request) -> web.Response:
    snapshot = request.app[STATE].snapshot()
    hub, log = request.app[HUB], request.app[LISTENS]
    for company in snapshot["companies"]:
        company["listening"] = hub.open_count(company["admin"])
        company["token_fetches"] = log.token_fetch_count(company["admin"])
    snapshot["open_listens"] = hub.open_count()
    counters: Counter[str] = request.app[COUNTERS]
    snapshot["requests"] = dict(counters)
    snapshot["faults"] = request.app[FAULTS].describe()
    return json_response(snapshot)


async def _clear_faults(request: web.Request) -> web.Response:
    request.app[FAULTS].clear()
    return json_response({"faults": []})


# -- the listen log ---------------------------------------------------------------------------


def _query_float(request: web.Request, name: str) -> float | None:
    raw = request.query.get(name)
    if raw is None or not raw.strip():
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ControlError(f"{name!r} must be a number of seconds, got {raw!r}")
    return value


def _query_company(request: web.Request) -> str | None:
    name = request.query.get("company")
    if name is None:
        return None
    if name.strip() in request.app[API2].tenants:  # a second-API tenant: its corpid
        return name.strip()
    return _company(request.app[STATE], {"company": name}, None).admin


def _log_route(
    read: Callable[[web.Request, str | None, float | None], dict[str, Any]],
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A listen-log reader: ``?company=`` (admin, domain or a second-API corpid) and
    ``?since=`` (seconds on the server's monotonic clock), answered with the clock's
    ``now`` and ``now_wall``."""

    async def handle(request: web.Request) -> web.Response:
        try:
            company = _query_company(request)
            answer = read(request, company, _query_float(request, "since"))
        except ControlError as exc:
            return json_response({"error": str(exc)}, status=exc.status)
        log = request.app[LISTENS]
        return json_response({"now": log.clock(), "now_wall": log.wall(), **answer})

    return handle


def _listens(request: web.Request, company: str | None, since: float | None) -> dict[str, Any]:
    log = request.app[LISTENS]
    return {"listens": [x.to_json() for x in log.listens(company, since=since)]}


def _overlaps(request: web.Request, company: str | None, since: float | None) -> dict[str, Any]:
    log = request.app[LISTENS]
    return {"overlaps": [x.to_json() for x in log.overlaps(company, since=since)]}


def _gaps(request: web.Request, company: str | None, since: float | None) -> dict[str, Any]:
    log = request.app[LISTENS]
    names = list(request.app[STATE].companies) if company is None else [company]
    least = _query_float(request, "min") or 0.0
    gaps = log.gaps(names, since=since, min_seconds=least)
    return {"gaps": [x.to_json() for x in gaps]}


def _tokens(request: web.Request, company: str | None, since: float | None) -> dict[str, Any]:
    log = request.app[LISTENS]
    names = list(request.app[STATE].companies) if company is None else [company]
    fetches = log.token_fetches(company, since=since)
    counted = Counter(f.company for f in fetches)
    return {
        "counts": {name: counted[name] for name in names},
        "fetches": [x.to_json() for x in fetches],
    }


def add_control_routes(app: web.Application) -> None:
    app.router.add_get("/_emulator/listens", _log_route(_listens))
    app.router.add_get("/_emulator/listens/overlaps", _log_route(_overlaps))
    app.router.add_get("/_emulator/listens/gaps", _log_route(_gaps))
    app.router.add_get("/_emulator/tokens", _log_route(_tokens))
    app.router.add_post("/_emulator/companies", _route(_add_tenants))
    app.router.add_post("/_emulator/mail", _route(_mail))
    app.router.add_post("/_emulator/read", _route(_read))
    app.router.add_post("/_emulator/user", _route(_user))
    app.router.add_post("/_emulator/party", _route(_party))
    app.router.add_post("/_emulator/company", _route(_add_company))
    app.router.add_post("/_emulator/faults", _route(_faults))
    app.router.add_delete("/_emulator/faults", _clear_faults)
    app.router.add_get("/_emulator/state", _state)
    app.router.add_post("/_emulator/reset", _route(_reset))
