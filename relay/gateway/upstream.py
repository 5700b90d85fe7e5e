"""The shared routes' upstream calls, for a tenant of either Exmail API.

A gateway tenant holds the client of its API: :class:`relay.exmail.ExmailClient` (the
BizMail OpenApi, ``api = "openapi"``) or :class:`relay.exmail2.Exmail2Client` (the
second API, ``api = "api2"``). The routes both APIs share answer the same JSON shapes;
this module makes the call each API has for them and maps the second API's answer onto
the first's shape (docs/gateway.md, "Tenants of the second API"):

=========================  ==============================  ===============================
route                      BizMail OpenApi                 second API
=========================  ==============================  ===============================
``GET .../users/{email}``  ``user/get`` (``Alias``)        ``user/get`` (``userid``)
``GET .../unread``         ``mail/newcount`` (NewCount)    ``mail/newcount`` (``count``)
``POST .../sso``, links    ``mail/authkey`` + login URL    ``service/get_login_url``
=========================  ==============================  ===============================

``user/get`` of the second API becomes the first's :class:`~relay.exmail.User` (``userid``
-> ``alias``, ``slaves`` -> ``slave_list``, ``extid`` -> ``ext_id``, ``enable`` 1/0 ->
``open_type`` 1/2), plus the keys only it has: ``department`` (the 64-bit department
ids; ``party_list`` stays empty, the API names no department paths), ``enable`` and
``cpwd_login``. Pure mapping, plus the one awaited call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from relay.exmail import ExmailClient, MalformedResponse, OpenType, User
from relay.exmail2 import Exmail2Client, Member, app_of
from relay.gateway.problems import Problem

__all__ = [
    "API_NAMES",
    "Api",
    "LoginUrl",
    "UpstreamClient",
    "api_of",
    "login_url",
    "member_as_user",
    "require_app",
    "unread_count",
    "user_answer",
]

Api = Literal["openapi", "api2"]
API_NAMES: dict[Api, str] = {
    "openapi": 'the BizMail OpenApi (api = "openapi")',
    "api2": 'the second Exmail API (api = "api2")',
}
"""How a problem names a tenant's API."""

UpstreamClient = ExmailClient | Exmail2Client


@dataclass(frozen=True, slots=True)
class LoginUrl:
    url: str
    expires_in: int | None
    """What the API says the URL lives (the second API: 300 s); ``None``: not said."""


def api_of(client: UpstreamClient) -> Api:
    return "api2" if isinstance(client, Exmail2Client) else "openapi"


def require_app(client: Exmail2Client, operation: str) -> None:
    """409 ``app-not-configured`` when the tenant has no secret for the application whose
    token ``operation`` needs (a configuration gap, not a bad request: never 400)."""
    app = app_of(operation)
    if app is not None and app not in client.apps:
        raise Problem(
            409, "app-not-configured", "Application not configured",
            f"{operation} needs the {app.value} application's token, and this tenant has no "
            f"secret for it ([[tenants]] {_SECRET_KEYS[app.value]})",
        )  # fmt: skip


_SECRET_KEYS = {
    "directory": "contact_secret",
    "sso": "sso_secret",
    "newmail": "newmail_secret",
    "logs": "log_secret",
    "settings": "option_secret",
}


def member_as_user(member: Member) -> dict[str, Any]:
    """A second-API member in the first API's ``user/get`` shape, plus its own keys."""
    user = User(
        alias=member.userid,
        name=member.name,
        gender=member.gender,
        slave_list=tuple(member.slaves),
        position=member.position,
        tel=member.tel,
        mobile=member.mobile,
        ext_id=member.extid,
        open_type=OpenType.ENABLED if member.enable else OpenType.DISABLED,
    )
    answer: dict[str, Any] = user.model_dump(mode="json")
    answer["department"] = list(member.department)
    answer["enable"] = member.enable
    answer["cpwd_login"] = member.cpwd_login
    return answer


async def user_answer(client: UpstreamClient, email: str) -> dict[str, Any]:
    """``GET .../users/{email}``: the user as typed JSON (the first API's shape)."""
    if isinstance(client, Exmail2Client):
        require_app(client, "user/get")
        return member_as_user(await client.user_get(email))
    answer: dict[str, Any] = (await client.user_get(email)).model_dump(mode="json")
    return answer


async def unread_count(client: UpstreamClient, email: str) -> int:
    """The user's unread count, asked upstream (``mail/newcount`` of either API)."""
    if isinstance(client, Exmail2Client):
        require_app(client, "mail/newcount")
        return await client.mail_newcount(email)
    return (await client.mail_newcount(email)).new_count


async def login_url(client: UpstreamClient, email: str) -> LoginUrl:
    """A one-click login URL into ``email``'s mailbox."""
    if isinstance(client, Exmail2Client):
        require_app(client, "service/get_login_url")
        got = await client.get_login_url(email)
        # The redirect's target comes from upstream here: an http(s) URL only, never a
        # javascript: or data: one, whatever the answer says.
        if urlsplit(got.login_url).scheme.lower() not in ("http", "https"):
            raise MalformedResponse("service/get_login_url: login_url is not an http(s) URL")
        return LoginUrl(got.login_url, got.expires_in)
    return LoginUrl(await client.sso_login_url(email), None)
