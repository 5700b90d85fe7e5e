"""The protocol's operations as the client knows them: where they live and which are reads.

Every operation of the BizMail OpenApi is a path under the API base URL
(``user/get``, ``party/sync``, ...). The reads change nothing on the server, so the
client may retry them on a transient fault; writes are never retried blindly.
:func:`sso_url` builds the SSO login URL from the configured login page (pure).
"""

from __future__ import annotations

from urllib.parse import urlencode

__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_LOGIN_URL",
    "DEFAULT_TOKEN_URL",
    "FORM_CONTENT_TYPE",
    "READ_OPERATIONS",
    "sso_url",
]

DEFAULT_API_URL = "http://openapi.exmail.qq.com:12211/openapi/"
DEFAULT_TOKEN_URL = "https://exmail.qq.com/cgi-bin/token"  # noqa: S105 - a URL, not a secret
DEFAULT_LOGIN_URL = "https://exmail.qq.com/cgi-bin/login"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"

READ_OPERATIONS = frozenset(
    {
        "user/get",
        "user/list",
        "mail/newcount",
        "mail/authkey",
        "party/list",
        "partyuser/list",
        "user/check",
    }
)
"""Operations that change nothing on the server: safe to retry on transient faults."""


def sso_url(login_url: str, *, agent: str, user: str, ticket: str) -> str:
    """The SSO login URL: ``login_url`` (the configured page, never a caller's) plus the
    one-time ``ticket`` of ``mail/authkey`` for ``user``, issued to admin ``agent``."""
    query = urlencode(
        {
            "fun": "bizopenssologin",
            "method": "bizauth",
            "agent": agent,
            "user": user,
            "ticket": ticket,
        },
        safe="@",
    )
    return f"{login_url}{'&' if '?' in login_url else '?'}{query}"
