"""Reading a request's body: all of it or a problem, never a part, never past the limit.

Where it sits: every gateway handler that looks at a body (``routes``' JSON and forms,
``tokens``' refresh, ``forwarding`` before it sends a request on to the owning replica)
reads it through :func:`read_body` and parses JSON through :func:`parse_json`; nothing
else in the gateway touches ``request.content``. The bound is ``[gateway]
max_body_bytes``.

Why one helper: ``request.content.read(n)`` answers what is *buffered*, not the body,
so a body that arrives in two TCP segments was cut at the first one and the cut value
reached Exmail. Here:

- a ``Content-Length`` over the limit is refused (413) before a byte is read;
- a body without ``Content-Length`` (chunked) that grows past the limit is refused
  (413) as soon as it does, without buffering the rest;
- a body that ends before its ``Content-Length`` (the client closed early) or whose
  chunked encoding is broken is refused (400 ``body-incomplete``), so no half body is
  ever acted on;
- JSON that is malformed, not UTF-8 or nested too deeply for the parser is 400
  ``invalid-request`` (not a ``RecursionError`` and a 500).

Every refusal is a :class:`~relay.gateway.problems.Problem`, so the gateway's middleware
answers ``application/problem+json`` and writes the audit line.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
from aiohttp import web

from relay.gateway.problems import Problem

__all__ = ["body_too_large", "parse_json", "read_body"]

_CHUNK = 64 * 1024


def body_too_large(limit: int, setting: str = "[gateway] max_body_bytes") -> Problem:
    """The 413 of a body over ``limit`` bytes (``setting`` names the bound)."""
    return Problem(
        413, "body-too-large", "Request body too large",
        f"the body is over {limit} bytes ({setting})", extra={"limit": limit},
    )  # fmt: skip


def _incomplete(detail: str) -> Problem:
    return Problem(400, "body-incomplete", "Request body incomplete", detail)


async def read_body(
    request: web.Request,
    limit: int,
    *,
    setting: str = "[gateway] max_body_bytes",
    within: float | None = None,
) -> bytes:
    """The whole body of ``request``, at most ``limit`` bytes; :class:`Problem` 413 if it is
    larger (declared or counted), 400 if it ends before its declared length, 408 if it has
    not all arrived within ``within`` seconds (None: no bound)."""
    if within is None:
        return await _read_body(request, limit, setting)
    try:
        async with asyncio.timeout(within):
            return await _read_body(request, limit, setting)
    except TimeoutError:
        raise Problem(
            408, "body-timeout", "Request body too slow",
            f"the body did not arrive within {within:g} s",
        ) from None  # fmt: skip


async def _read_body(request: web.Request, limit: int, setting: str) -> bytes:
    declared = request.content_length
    if declared is not None and declared > limit:
        raise body_too_large(limit, setting)
    chunks: list[bytes] = []
    size = 0
    try:
        # readany() waits for data and answers b"" only at the end of the body; an
        # early close or a broken chunked encoding raises instead (aiohttp sets the
        # payload's exception), so a short body is never taken for a whole one.
        while chunk := await request.content.readany():
            size += len(chunk)
            if size > limit:
                raise body_too_large(limit, setting)
            chunks.append(chunk)
    except (ConnectionError, aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
        raise _incomplete(f"the body ended early ({type(exc).__name__})") from None
    if declared is not None and size != declared:
        raise _incomplete(f"the body has {size} of its {declared} declared bytes")
    return b"".join(chunks)


def parse_json(raw: bytes) -> object:
    """``raw`` as JSON; :class:`Problem` 400 ``invalid-request`` when it is not (malformed,
    not UTF-8, a number too long, or nested deeper than the parser goes)."""
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _invalid("the body is not valid JSON") from None
    except RecursionError:
        raise _invalid("the body's JSON is nested too deeply") from None


def _invalid(detail: str) -> Problem:
    return Problem(400, "invalid-request", "Invalid request", detail)
