"""Decoding the second API's answers: bytes to a checked envelope, then to typed models.

Pure functions, no I/O. Every answer is one JSON object holding ``errcode`` (0 = success)
and ``errmsg`` beside its payload (notes §1):

- the body is read by the standard library's decoder and, when that refuses it, by the
  tolerant reader of :mod:`relay.exmail._json` (trailing commas, typographic quotes...).
  Both give JSON integers as exact Python ints, so a 64-bit department id is never a float;
- ``errcode`` may be a JSON integer or a numeric string; only ``errcode == 0`` counts as
  success, never ``errmsg`` (which says ``ok``, ``created``, ``update``...). An object
  without ``errcode`` is taken as a success (the doc's ``gettoken`` example has none);
- a non-zero code raises :func:`relay.exmail2._errors.api2_error`'s exception; a body
  that is not a JSON object, or has the wrong shape, is
  :class:`~relay.exmail.MalformedResponse`. Messages never quote the body (a ``gettoken``
  answer holds a token).
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, SecretStr, ValidationError

from relay.exmail._decode import shape_error
from relay.exmail._exceptions import HTTPStatusError, InvalidCredentials, MalformedResponse
from relay.exmail._json import JSONSyntaxError, key_form, loads
from relay.exmail2._errors import api2_error, errcode_of
from relay.exmail2._models import TokenAnswer

__all__ = ["decode_answer", "decode_model", "decode_token", "parse_object"]

M = TypeVar("M", bound=BaseModel)


def parse_object(operation: str, body: bytes) -> dict[str, Any]:
    """The body as a JSON object, integers exact; :class:`MalformedResponse` otherwise."""
    if not body.strip():
        raise MalformedResponse(f"{operation}: empty body")
    try:
        value = json.loads(body)
    except ValueError:
        try:
            value = loads(body)
        except (JSONSyntaxError, ValueError) as exc:  # ValueError: an int of 4300+ digits
            raise MalformedResponse(f"{operation}: body is not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise MalformedResponse(f"{operation}: expected a JSON object, got {type(value).__name__}")
    return value


def _field(value: dict[str, Any], name: str) -> Any:
    for key, item in value.items():
        if key_form(str(key)) == name:
            return item
    return None


def decode_answer(operation: str, status: int, body: bytes) -> dict[str, Any]:
    """The answer's object when ``errcode`` is 0; the matching exception otherwise."""
    if not 200 <= status < 300:
        try:
            value = parse_object(operation, body)
        except MalformedResponse:
            value = {}
        code = errcode_of(_field(value, "errcode"))
        if code:  # an error object on a non-2xx answer says more than the status
            raise api2_error(code, str(_field(value, "errmsg") or ""), operation=operation)
        raise HTTPStatusError(f"{operation}: HTTP {status}", status=status)
    value = parse_object(operation, body)
    raw = _field(value, "errcode")
    code = 0 if raw is None else errcode_of(raw)
    if code is None:
        raise MalformedResponse(f"{operation}: errcode is not an integer")
    if code != 0:
        errmsg = _field(value, "errmsg")
        raise api2_error(code, "" if errmsg is None else str(errmsg), operation=operation)
    return value


def decode_model(operation: str, value: Any, model: type[M]) -> M:
    """``value`` validated into ``model``; a wrong shape is :class:`MalformedResponse`."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise MalformedResponse(shape_error(operation, exc)) from None


def decode_token(status: int, body: bytes) -> tuple[SecretStr, float]:
    """``gettoken``'s answer: (token, lifetime in seconds), or why not."""
    value = decode_answer("gettoken", status, body)
    try:
        answer = TokenAnswer.model_validate(value)
    except ValidationError:
        raise InvalidCredentials(
            "", "no access_token", operation="gettoken", detail="no access_token in the answer"
        ) from None
    if not answer.access_token.get_secret_value():
        raise InvalidCredentials("", "empty access_token", operation="gettoken")
    return answer.access_token, float(answer.expires_in)
