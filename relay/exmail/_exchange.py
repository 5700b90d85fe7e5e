"""One HTTP exchange with a deadline, a size cap and translated errors: both clients' I/O.

Where it sits: :class:`relay.exmail.ExmailClient` (form POSTs to the BizMail OpenApi) and
:class:`relay.exmail2.Exmail2Client` (GETs with a query, POSTs with a JSON body to the
second API) send every request through :func:`exchange`. It owns what the two share:

- a total deadline and a connect deadline (aiohttp's ``ClientTimeout``);
- the body read whole with a cap (:func:`relay.exmail._body.read_capped`);
- aiohttp's exceptions translated into :mod:`relay.exmail._exceptions` with
  ``raise ... from exc`` and messages that never hold a URL (it may carry a token);
- ``on_request(operation, seconds, outcome)`` after every exchange, whatever happened;
- the request options of the token fence (``options``, from
  :func:`relay.exmail._fence.post_options`), so a fenced request never leaves.

Status codes are returned, not judged: each client knows what a non-2xx means to it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import aiohttp

from relay.exmail._body import read_capped
from relay.exmail._exceptions import (
    ExmailTimeout,
    NetworkError,
    ResponseTooLarge,
    TokenFenced,
    describe_network_error,
)

__all__ = ["OnRequest", "exchange"]

OnRequest = Callable[[str, float, str], None]


async def exchange(
    session: aiohttp.ClientSession,
    method: str,
    operation: str,
    url: str,
    *,
    query: Sequence[tuple[str, str]] | None = None,
    body: bytes | None = None,
    headers: Mapping[str, str],
    total: float,
    connect: float,
    max_response_bytes: int,
    max_field_bytes: int | None = None,
    options: Mapping[str, Any],
    on_request: OnRequest | None,
) -> tuple[int, bytes]:
    """Send one request; (status, capped body). Passing ``total`` with no answer is an
    :class:`ExmailTimeout`; ``max_field_bytes`` cuts long JSON strings as they arrive."""
    timeout = aiohttp.ClientTimeout(total=total, connect=connect)
    started = time.monotonic()
    outcome = "ok"
    try:
        async with session.request(
            method,
            url,
            params=list(query) if query else None,
            data=body,
            headers=dict(headers),
            timeout=timeout,
            **options,
        ) as resp:
            raw = await read_capped(
                operation, resp, max_response_bytes, max_field_bytes=max_field_bytes
            )
            status = resp.status
        if not 200 <= status < 300:
            outcome = "http_status"
        return status, raw
    except (ResponseTooLarge, TokenFenced) as exc:  # fenced: asked as it left, not sent
        outcome = "too_large" if isinstance(exc, ResponseTooLarge) else "fenced"
        raise
    except aiohttp.ConnectionTimeoutError as exc:
        outcome = "timeout"
        raise ExmailTimeout(f"{operation}: connect timed out after {connect:g}s") from exc
    except TimeoutError as exc:
        outcome = "timeout"
        raise ExmailTimeout(f"{operation}: no answer within {total:g} s") from exc
    except aiohttp.ClientError as exc:
        outcome = "network"
        raise NetworkError(f"{operation}: {describe_network_error(exc)}") from exc
    finally:
        if on_request is not None:
            on_request(operation, time.monotonic() - started, outcome)
