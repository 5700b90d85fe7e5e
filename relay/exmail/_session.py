"""``SessionOwner``: the HTTP session a client may own, and its async-context life.

Where it sits: the base of :class:`relay.exmail.ExmailClient` and
:class:`relay.exmail2.Exmail2Client`. A client given a session uses it and never closes
it; a client without one makes its own on first use (with the request fence's
:func:`~relay.exmail.fence_trace` hook) and closes it on :meth:`aclose` or on leaving
``async with``.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

import aiohttp

from relay.exmail._fence import fence_trace

__all__ = ["SessionOwner"]


class SessionOwner:
    """The session life shared by the clients; subclasses set ``_session`` and
    ``_owns_session`` (``session is None``) in their ``__init__``."""

    _session: aiohttp.ClientSession | None
    _owns_session: bool

    async def __aenter__(self) -> Self:
        self._get_session()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP session if this client created it."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(trace_configs=[fence_trace()])
            self._owns_session = True
        return self._session
