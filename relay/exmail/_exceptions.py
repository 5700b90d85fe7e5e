"""Every error the Exmail client raises, rooted at :class:`ExmailError`.

The tree separates who is at fault, because callers react differently to each::

    ExmailError
    ├── TransportError            no usable answer came back
    │   ├── NetworkError          connection refused, reset, DNS, dropped mid-body
    │   ├── ExmailTimeout         connect or read deadline passed
    │   ├── HTTPStatusError       non-2xx HTTP status (``.status``)
    │   ├── ResponseTooLarge      body over ``max_response_bytes``
    │   └── MalformedResponse     body is not the JSON the operation promises
    ├── ApiError                  the server answered ``{"errcode", "error"}`` (``.errcode`` str)
    │   ├── InvalidToken          1200: fetch a new token, retry once
    │   ├── TemporarilyUnavailable 1002: retry later
    │   ├── NotFound              1310, 1400, ``user_not_found`` / ``party_not_found``
    │   └── InvalidCredentials    the token request refused the client id / secret
    ├── InvalidRequest            a documented limit was violated; nothing was sent
    └── TokenFenced               invalid token while the token fence says no (this replica
                                  no longer holds the tenant's shard lease): no new token
                                  was fetched; stop serving the tenant

Messages are built from operation names, status codes and server error codes only:
they never contain the client secret or an access token. Third-party exceptions
(aiohttp, json) are translated at the client boundary with ``raise ... from exc``.
"""

from __future__ import annotations

import aiohttp

__all__ = [
    "ApiError",
    "ExmailError",
    "ExmailTimeout",
    "HTTPStatusError",
    "InvalidCredentials",
    "InvalidRequest",
    "InvalidToken",
    "MalformedResponse",
    "NetworkError",
    "NotFound",
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
