"""Every error both Exmail clients raise, rooted at :class:`ExmailError`.

One tree serves :mod:`relay.exmail` (the BizMail OpenApi) and :mod:`relay.exmail2` (the
second API, ``api.exmail.qq.com/cgi-bin``), so a caller handles a tenant of either API
the same way. The tree separates who is at fault, because callers react differently to
each::

    ExmailError
    ├── TransportError            no usable answer came back
    │   ├── NetworkError          connection refused, reset, DNS, dropped mid-body
    │   ├── ExmailTimeout         connect or read deadline passed
    │   ├── HTTPStatusError       non-2xx HTTP status (``.status``)
    │   ├── ResponseTooLarge      body over ``max_response_bytes``
    │   └── MalformedResponse     body is not the JSON the operation promises
    ├── ApiError                  the server refused: ``.errcode`` (str), ``.error``
    │   ├── InvalidToken          1200; API 2: 40001, 40014, 42001 (fetch a new token, retry once)
    │   ├── TemporarilyUnavailable 1002; API 2: -1 (system busy): retry later
    │   │   └── RateLimited       API 2: 45009 (call frequency limit): back off
    │   ├── NotFound              1310, 1400, ``*_not_found``; API 2: 60003, 60004, 60111
    │   ├── Conflict              API 2: 60005, 60006, 60008, 60102, 60104, 60106 (exists,
    │   │                         or still has members / sub-departments)
    │   ├── PermissionDenied      API 2: 48002 (API disabled for the app), 60011 (no
    │   │                         privilege): the tenant's configuration, not the call
    │   └── InvalidCredentials    the token request refused the client id / secret
    │                             (API 2: ``gettoken`` refused the corpid / app secret)
    ├── InvalidRequest            a documented limit was violated; nothing was sent
    └── TokenFenced               invalid token while the token fence says no (this replica
                                  no longer holds the tenant's shard lease): no new token
                                  was fetched; stop serving the tenant

API 2 answers ``{"errcode": <int>, "errmsg": "..."}``: ``errcode`` is kept as its decimal
string (``"60111"``, ``"-1"``) so both APIs' errors compare alike, ``.error`` is the
``errmsg``; a code with no class here is a plain :class:`ApiError` (the mapping lives in
:mod:`relay.exmail2._errors`).

Messages are built from operation names, status codes and server error codes only:
they never contain the client secret or an access token. Third-party exceptions
(aiohttp, json) are translated at the client boundary with ``raise ... from exc``.
"""

from __future__ import annotations

import aiohttp

__all__ = [
    "ApiError",
    "Conflict",
    "ExmailError",
    "ExmailTimeout",
    "HTTPStatusError",
    "InvalidCredentials",
    "InvalidRequest",
    "InvalidToken",
    "MalformedResponse",
    "NetworkError",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "ResponseTooLarge",
    "TemporarilyUnavailable",
    "TokenFenced",
    "TransportError",
    "api_error",
    "is_transient",
]


class ExmailError(Exception):
    """Root of every error raised by :mod:`relay.exmail`."""


class TransportError(ExmailError):
    """No usable answer: the network, a deadline, the HTTP layer or the body failed."""


class NetworkError(TransportError):
    """The connection could not be made or broke before the whole answer arrived."""


class ExmailTimeout(TransportError):
    """A connect or read deadline passed."""


class HTTPStatusError(TransportError):
    """The server answered with a non-2xx HTTP status."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class ResponseTooLarge(TransportError):
    """The body was larger than the client's ``max_response_bytes``."""


class MalformedResponse(TransportError):
    """The body could not be read as the JSON the operation promises."""


class ApiError(ExmailError):
    """The server refused the call with an error object ``{"errcode", "error"}``.

    ``errcode`` is kept as the server gave it (a string, e.g. ``"1310"``).
    """

    def __init__(self, errcode: str, error: str, *, operation: str = "", detail: str = "") -> None:
        self.errcode = errcode
        self.error = error
        self.operation = operation
        self.detail = detail
        where = f"{operation}: " if operation else ""
        extra = f" ({detail})" if detail else ""
        super().__init__(f"{where}errcode {errcode} {error}{extra}")


class InvalidToken(ApiError):
    """1200 invalid_token: the access token expired or another fetch replaced it."""


class TemporarilyUnavailable(ApiError):
    """1002 temporarily_unavailable: the server asks to retry later."""


class NotFound(ApiError):
    """The account, department or group does not exist (1310, 1400, ``*_not_found``)."""


class RateLimited(TemporarilyUnavailable):
    """API 2's 45009: the call frequency limit; retry after a backoff."""


class Conflict(ApiError):
    """API 2: the thing exists already, or a department still has members or children."""


class PermissionDenied(ApiError):
    """API 2: the app may not call this (48002) or may not touch this member or
    department (60011). The tenant's configuration must change; retrying will not help."""


class InvalidCredentials(ApiError):
    """The token request refused the client id / secret (1101 invalid_client, HTTP 400/401)."""


class InvalidRequest(ExmailError):
    """A documented limit of the protocol was violated; the request was not sent."""


class TokenFenced(ExmailError):
    """The token was refused and the fence forbids fetching another: under shard leases,
    another replica owns this tenant now (its fetch invalidated ours). Not transient."""


_BY_CODE: dict[str, type[ApiError]] = {
    "1002": TemporarilyUnavailable,
    "1101": InvalidCredentials,
    "1200": InvalidToken,
    "1310": NotFound,
    "1400": NotFound,
}
_BY_NAME: dict[str, type[ApiError]] = {
    "temporarily_unavailable": TemporarilyUnavailable,
    "invalid_client": InvalidCredentials,
    "invalid_token": InvalidToken,
    "user_not_found": NotFound,
    "party_not_found": NotFound,
}


def api_error(errcode: str, error: str, *, operation: str = "", detail: str = "") -> ApiError:
    """The most specific :class:`ApiError` subclass for a server error object."""
    cls = _BY_CODE.get(errcode.strip()) or _BY_NAME.get(error.strip().lower(), ApiError)
    return cls(errcode, error, operation=operation, detail=detail)


def is_transient(exc: BaseException) -> bool:
    """Whether trying the same call again later may succeed.

    True for network faults, timeouts, HTTP 5xx (and 429), 1002 and malformed bodies.
    False for everything that will fail the same way again (4xx, other API errors,
    caller mistakes, too-large bodies).
    """
    if isinstance(exc, (NetworkError, ExmailTimeout, MalformedResponse, TemporarilyUnavailable)):
        return True
    if isinstance(exc, HTTPStatusError):
        return exc.status >= 500 or exc.status == 429
    return False


def describe_network_error(exc: aiohttp.ClientError) -> str:
    """A short, secret-free reason: host and port for a refused connection, else the
    error's own text unless it carries a URL (which could hold a token parameter)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror or type(exc.os_error).__name__
        return f"cannot connect to {exc.host}:{exc.port}: {reason}"
    text = str(exc)
    if not text or "://" in text or len(text) > 200:
        return type(exc).__name__
    return f"{type(exc).__name__}: {text}"
