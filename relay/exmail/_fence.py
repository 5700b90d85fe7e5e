"""The fence at the moment a request leaves: an aiohttp trace hook.

Where it sits: :class:`relay.exmail.ExmailClient` passes its token cache's
:meth:`~relay.exmail.TokenCache.admit` as each request's ``trace_request_ctx``; the
session's :func:`fence_trace` hook calls it once the connection is acquired (after any
wait for the pool or a connect) and before the first byte is written. A fence that says
no raises :class:`~relay.exmail.TokenFenced` there: aiohttp closes that connection and
nothing is sent. Lease mode's sessions are made with ``trace_configs=[fence_trace()]``;
a fenced client refuses a session without it.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import aiohttp

from relay.exmail._token import TokenCache

__all__ = ["fence_trace", "has_fence_trace", "post_options"]


async def _admit_at_send(
    session: aiohttp.ClientSession,
    context: SimpleNamespace,
    params: aiohttp.TraceRequestHeadersSentParams,
) -> None:
    # Called by aiohttp with the connection acquired and before the request's first
    # byte is written; an exception here closes that connection and nothing is sent.
    admit = getattr(context, "trace_request_ctx", None)
    if callable(admit):
        admit()


def fence_trace() -> aiohttp.TraceConfig:
    """The trace hook that asks a request's fence as it leaves: sessions shared by
    fenced clients (lease mode) are made with ``trace_configs=[fence_trace()]``."""
    config = aiohttp.TraceConfig()
    config.on_request_headers_sent.append(_admit_at_send)
    setattr(config, _FENCE_MARK, True)
    return config


_FENCE_MARK = "_relay_fence"


def has_fence_trace(session: aiohttp.ClientSession) -> bool:
    return any(getattr(t, _FENCE_MARK, False) for t in session.trace_configs)


def post_options(tokens: TokenCache, session: aiohttp.ClientSession | None) -> dict[str, Any]:
    """The options of every request of a client with ``tokens``: its fence goes along to
    the hook. A fenced client refuses a session without the hook (a request could then
    leave after the lease is lost, issue 18)."""
    if tokens.fenced and session is not None and not has_fence_trace(session):
        raise ValueError("a fenced client needs a session made with fence_trace()")
    return {"allow_redirects": False, "trace_request_ctx": tokens.admit}
