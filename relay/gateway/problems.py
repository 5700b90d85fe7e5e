"""Errors as RFC 9457 problem details (``application/problem+json``), and the mapping of
every Exmail error to an HTTP status.

Every error the gateway answers is a :class:`Problem`: ``type`` (a URN naming the kind,
listed in ``docs/gateway.md``), ``title``, ``status``, ``detail``, plus ``errcode`` when
Exmail refused, and ``scope`` when a scope is missing. Details are built from operation
names, error codes and the client's own input: never a key, a token or an authkey.

| Exmail error | HTTP |
|---|---|
| :class:`~relay.exmail.InvalidRequest` (a documented limit; nothing sent) | 400 |
| :class:`~relay.exmail.NotFound` (1310, 1400, ``*_not_found``) | 404 |
| other :class:`~relay.exmail.ApiError` (Exmail refused a request the gateway found valid) | 409 |
| :class:`~relay.exmail.TemporarilyUnavailable` (1002), HTTP 5xx/429 | 503 + Retry-After |
| :class:`~relay.exmail.ExmailTimeout` | 504 |
| invalid token after the one refresh, refused credentials | 502 |
| network fault, malformed or too large answer, other HTTP status | 502 |

400 always means "the request breaks the OpenAPI document"; a request the document allows
that Exmail still refuses (an address in use, a domain Exmail does not serve for the
tenant, a department not empty) is 409: the conflict is with Exmail's state or rules,
which the relay cannot see before it asks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from aiohttp import web

from relay.exmail import (
    ApiError,
    ExmailError,
    ExmailTimeout,
    HTTPStatusError,
    InvalidCredentials,
    InvalidRequest,
    InvalidToken,
    NotFound,
    TemporarilyUnavailable,
    TokenFenced,
)

__all__ = ["PROBLEM_CONTENT_TYPE", "RETRY_AFTER_UPSTREAM", "Problem", "from_exmail_error"]

PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:exmail-relay:problem:"
RETRY_AFTER_UPSTREAM = 5
"""Seconds a client is asked to wait after Exmail said "temporarily unavailable"."""


class Problem(Exception):
    """An error answer. Raise it from a handler; the gateway renders it."""

    def __init__(
        self,
        status: int,
        kind: str,
        title: str,
        detail: str = "",
        *,
        errcode: str | None = None,
        scope: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(f"{status} {kind}: {detail or title}")
        self.status = status
        self.kind = kind
        self.title = title
        self.detail = detail
        self.errcode = errcode
        self.scope = scope
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self) -> dict[str, object]:
        out: dict[str, object] = {
            "type": TYPE_PREFIX + self.kind,
            "title": self.title,
            "status": self.status,
            "detail": self.detail or self.title,
        }
        if self.errcode is not None:
            out["errcode"] = self.errcode
        if self.scope is not None:
            out["scope"] = self.scope
        return {**self.extra, **out}

    def response(self, instance: str | None = None) -> web.Response:
        body = self.body()
        if instance is not None:
            body["instance"] = instance
        return web.Response(
            status=self.status,
            text=json.dumps(body, ensure_ascii=False),
            content_type=PROBLEM_CONTENT_TYPE,
            headers={"Cache-Control": "no-store", **self.headers},
        )


def from_exmail_error(exc: ExmailError) -> Problem:
    """The problem a failed upstream call becomes (see the table above)."""
    detail = str(exc)
    errcode = exc.errcode if isinstance(exc, ApiError) else None
    retry = {"Retry-After": str(RETRY_AFTER_UPSTREAM)}
    if isinstance(exc, InvalidRequest):
        return Problem(400, "invalid-request", "Invalid request", detail)
    if isinstance(exc, TokenFenced):  # the lease went while the call was under way
        return Problem(
            503, "tenant-moving", "Tenant changing owner",
            "this replica gave the tenant up while the call was under way; try again",
            headers={"Retry-After": "1"},
        )  # fmt: skip
    if isinstance(exc, NotFound):
        return Problem(404, "upstream-not-found", "Not found in Exmail", detail, errcode=errcode)
    if isinstance(exc, TemporarilyUnavailable):
        return Problem(
            503, "upstream-unavailable", "Exmail is temporarily unavailable", detail,
            errcode=errcode, headers=retry,
        )  # fmt: skip
    if isinstance(exc, InvalidToken | InvalidCredentials):
        return Problem(
            502, "upstream-auth", "Exmail refused the relay's credentials", detail, errcode=errcode
        )
    if isinstance(exc, ApiError):
        return Problem(
            409, "upstream-refused", "Exmail refused the request", detail, errcode=errcode
        )
    if isinstance(exc, ExmailTimeout):
        return Problem(504, "upstream-timeout", "Exmail did not answer in time", detail)
    if isinstance(exc, HTTPStatusError) and (exc.status >= 500 or exc.status == 429):
        return Problem(
            503, "upstream-unavailable", "Exmail is temporarily unavailable", detail, headers=retry
        )
    return Problem(502, "upstream-failed", "No usable answer from Exmail", detail)
