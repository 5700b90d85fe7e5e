"""The protocol's operations as the client knows them: where they live and which are reads.

Every operation of the BizMail OpenApi is a path under the API base URL
(``user/get``, ``party/sync``, ...). The reads change nothing on the server, so the
client may retry them on a transient fault; writes are never retried blindly.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_LOGIN_URL",
    "DEFAULT_TOKEN_URL",
    "FORM_CONTENT_TYPE",
    "READ_OPERATIONS",
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
