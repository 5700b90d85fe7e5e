"""Response decoding: raw body bytes to typed results, or the matching exception.

Pure functions, no I/O: the client hands each a ``(operation, body)`` pair after the
HTTP exchange. Any body that is an error object ``{"errcode", "error"}`` raises the most
specific :class:`~relay.exmail._exceptions.ApiError`; a body that cannot be read, or
has the wrong shape, raises :class:`~relay.exmail._exceptions.MalformedResponse`.
Messages name the operation and the failure, never the body itself (a token response
body holds a secret).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, SecretStr, ValidationError

from relay.exmail._exceptions import (
    HTTPStatusError,
    InvalidCredentials,
    MalformedResponse,
    TemporarilyUnavailable,
    api_error,
)
from relay.exmail._json import JSONSyntaxError, loads, normalize_keys
from relay.exmail._listen import ListenError, ListenMessage, parse_listen
from relay.exmail._models import ErrorBody, TokenResponse

__all__ = [
    "decode_empty",
    "decode_listen",
    "decode_object",
    "decode_token",
    "decode_value",
    "model_decoder",
    "raise_error_body",
    "shape_error",
    "without_secrets",
]

M = TypeVar("M", bound=BaseModel)


def decode_token(status: int, body: bytes) -> tuple[SecretStr, float]:
    """The token URL's answer: (token, lifetime in seconds), or why not.

    Any refusal of the credentials (an error object other than 1002, HTTP 400/401/403,
    an answer without ``access_token``) is :class:`InvalidCredentials`.
    """
    value: Any = None
    if body.strip():
        try:
            value = loads(body)
        except JSONSyntaxError as exc:
            if 200 <= status < 300:
                raise MalformedResponse(f"token: body is not JSON ({exc})") from None
    if isinstance(value, dict) and "errcode" in normalize_keys(value):
        err = _error_body(value)
        if err.errcode == "1002" or status >= 500:
            raise TemporarilyUnavailable(err.errcode, err.error, operation="token")
        raise InvalidCredentials(err.errcode, err.error or "invalid_client", operation="token")
    if status in (400, 401, 403):
        raise InvalidCredentials("", "invalid_client", operation="token", detail=f"HTTP {status}")
    if not 200 <= status < 300:
        raise HTTPStatusError(f"token: HTTP {status}", status=status)
    try:
        token = TokenResponse.model_validate(value)
    except ValidationError:
        raise InvalidCredentials(
            "", "invalid_client", operation="token", detail="no access_token in the answer"
        ) from None
    if not token.access_token.get_secret_value():
        raise InvalidCredentials("", "invalid_client", operation="token", detail="empty token")
    return token.access_token, float(token.expires_in)


def _error_body(value: dict[str, Any]) -> ErrorBody:
    try:
        return ErrorBody.model_validate(value)
    except ValidationError:
        return ErrorBody(errcode="", error="unreadable error object")


def raise_error_body(operation: str, body: bytes) -> None:
    """Raise the error object a (non-2xx) body carries; say nothing about anything else."""
    with contextlib.suppress(MalformedResponse):
        _parse(operation, body)


def _parse(operation: str, body: bytes) -> Any:
    """The body's JSON value; an error object raises its :class:`ApiError`."""
    try:
        value = loads(body)
    except JSONSyntaxError as exc:
        raise MalformedResponse(f"{operation}: body is not JSON ({exc})") from None
    if isinstance(value, dict) and "errcode" in normalize_keys(value):
        err = _error_body(value)
        raise api_error(err.errcode, err.error, operation=operation, detail=err.detail)
    return value


def decode_value(operation: str, body: bytes) -> Any:
    if not body.strip():
        raise MalformedResponse(f"{operation}: empty body where data was expected")
    return _parse(operation, body)


def decode_object(operation: str, body: bytes) -> dict[str, Any] | None:
    if not body.strip():
        return None
    value = decode_value(operation, body)
    if not isinstance(value, dict):
        raise MalformedResponse(f"{operation}: expected a JSON object, got {type(value).__name__}")
    return value


def decode_empty(operation: str, body: bytes) -> None:
    """Writes answer an empty body; an error object raises, an unreadable body is malformed."""
    if body.strip():
        _parse(operation, body)


def decode_listen(operation: str, body: bytes) -> list[ListenMessage]:
    messages = parse_listen(body)
    if messages and all(isinstance(m, ListenError) for m in messages):
        first = messages[0]
        assert isinstance(first, ListenError)
        raise api_error(first.errcode, first.error, operation=operation)
    return messages


def model_decoder(model: type[M]) -> Callable[[str, bytes], M]:
    """A decoder that validates the body into ``model``; a wrong shape is malformed."""

    def decode(operation: str, body: bytes) -> M:
        value = decode_value(operation, body)
        try:
            return model.model_validate(value)
        except ValidationError as exc:
            raise MalformedResponse(shape_error(operation, exc)) from None

    return decode


def shape_error(operation: str, exc: ValidationError) -> str:
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid"}
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return f"{operation}: unexpected response shape at {where}: {first['msg']}"


# Shorter strings are too common to mask without mangling the answer (and masking every
# "a" would tell which letter the secret is); configuration refuses no key for it.
MIN_MASKED = 6


def without_secrets(body: bytes, *secrets: str) -> bytes:
    """``body`` with every occurrence of our own secrets replaced by ``***``.

    A server (or a proxy) that echoes the client secret or the access token back, in an
    error text say, must not carry it into an exception, a log line or the status page.
    Done on the raw answer, before anything is decoded, so no path can miss it.
    """
    for secret in secrets:
        raw = secret.encode("utf-8")
        if len(raw) >= MIN_MASKED and raw in body:
            body = body.replace(raw, b"***")
    return body
