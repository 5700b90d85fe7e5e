"""The second API's error codes, mapped onto the one exception tree of :mod:`relay.exmail`.

Pure: :func:`api2_error` turns an ``{"errcode", "errmsg"}`` answer into the most
specific :class:`~relay.exmail.ApiError` subclass. Only 40001, 40014, 40031, 40070 and
601002 are seen for Exmail; the rest are WeCom's codes, which Exmail's templates copy
(notes §3, marked *inferred*). An unknown code is a plain :class:`ApiError` carrying the
code and the message: it never fails to decode.

40001 means two things: at ``gettoken`` the corpid or secret is wrong
(:class:`InvalidCredentials`); on any other call the token is (:class:`InvalidToken`,
refetched once). :data:`TOKEN_CODES` are the codes after which the client drops the
app's token, fetches a new one and retries the call once.
"""

from __future__ import annotations

from relay.exmail._exceptions import (
    ApiError,
    Conflict,
    InvalidCredentials,
    InvalidToken,
    NotFound,
    PermissionDenied,
    RateLimited,
    TemporarilyUnavailable,
)

__all__ = ["TOKEN_CODES", "api2_error", "errcode_of"]

TOKEN_CODES = frozenset({40001, 40014, 42001})
"""Invalid credential / invalid access_token / access_token expired."""

_BY_CODE: dict[int, type[ApiError]] = {
    -1: TemporarilyUnavailable,
    45009: RateLimited,
    40001: InvalidToken,
    40014: InvalidToken,
    42001: InvalidToken,
    48002: PermissionDenied,
    60011: PermissionDenied,
    60003: NotFound,
    60004: NotFound,
    60111: NotFound,
    60005: Conflict,
    60006: Conflict,
    60008: Conflict,
    60102: Conflict,
    60104: Conflict,
    60106: Conflict,
}


def errcode_of(value: object) -> int | None:
    """``errcode`` as an int: a JSON integer or a numeric string (LEO compares strings);
    ``None`` when it is neither (a bool is not a code)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.removeprefix("-").isdigit():
            return int(text)
    return None


def api2_error(errcode: int, errmsg: str, *, operation: str) -> ApiError:
    """The exception for a non-zero ``errcode`` of ``operation`` (``gettoken`` included)."""
    if operation == "gettoken" and errcode not in (-1, 45009):
        cls: type[ApiError] = InvalidCredentials
    else:
        cls = _BY_CODE.get(errcode, ApiError)
    return cls(str(errcode), errmsg, operation=operation)
