"""The SSO login page, ``/cgi-bin/login``, for both APIs' one-time keys.

- the first API: ``?fun=bizopenssologin&method=bizauth&agent=<admin>&user=<email>&ticket=<key>``
  with a ticket of ``mail/authkey`` (``EmulatorState.sso_login``);
- the second API: ``?fun=bizopenssologin&method=openapi&userid=<email>&authkey=<key>``, the
  URL ``service/get_login_url`` answers (``Api2State.sso_login``).

Either consumes its key once and answers a small page naming the account as
``<h1 id='account'>...</h1>`` (200, for browser tests), or 403 with the reason: unknown,
used or expired key, wrong user. 400 when ``fun``/``method`` or a parameter is missing.
"""

from __future__ import annotations

import html

from aiohttp import web

from ._api2state import Login2Refused
from ._http import API2, STATE
from ._state import LoginRefused

__all__ = ["login"]


def _page(title: str, message: str, status: int) -> web.Response:
    body = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head><body><h1>{html.escape(title)}</h1>"
        f"<p>{html.escape(message)}</p></body></html>"
    )
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


async def _params(request: web.Request) -> dict[str, str]:
    """Query and form parameters, names lower-cased, the last value of a name winning."""
    values = {key.lower(): value for key, value in request.query.items()}
    if request.method == "POST" and request.can_read_body:
        form = await request.post()
        values.update({k.lower(): v for k, v in form.items() if isinstance(v, str)})
    return values


async def login(request: web.Request) -> web.Response:
    params = await _params(request)
    method = params.get("method")
    if params.get("fun") != "bizopenssologin" or method not in ("bizauth", "openapi"):
        return _page("Bad request", "expected fun=bizopenssologin&method=bizauth|openapi", 400)
    try:
        if method == "openapi":
            userid, authkey = params.get("userid", ""), params.get("authkey", "")
            if not (userid and authkey):
                return _page("Bad request", "userid and authkey are required", 400)
            account = request.app[API2].sso_login(userid, authkey)
        else:
            agent, user = params.get("agent", ""), params.get("user", "")
            ticket = params.get("ticket", "")
            if not (agent and user and ticket):
                return _page("Bad request", "agent, user and ticket are required", 400)
            account = request.app[STATE].sso_login(agent, user, ticket)
    except (LoginRefused, Login2Refused) as exc:
        return _page("Login refused", str(exc), 403)
    return _mailbox_page(account)


def _mailbox_page(alias: str) -> web.Response:
    """The page a consumed key lands on: it names the account, for browser tests."""
    body = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        "<title>Exmail emulator mailbox</title></head><body>"
        f"<h1 id='account'>{html.escape(alias)}</h1><p>Logged in by SSO ticket.</p></body></html>"
    )
    return web.Response(
        text=body, content_type="text/html", charset="utf-8", headers={"Cache-Control": "no-store"}
    )
