"""Directory expansion: one ``user/get`` per changed alias, turned into user events.

Where it sits: called by :class:`relay.runtime.listener.Listener` when ``listen``
reports a new directory version (and at a ``snapshot`` bootstrap), after ``user/list``
has named the changed aliases. At most ``concurrency`` lookups run at once.

Failures: a transient fault (network, 5xx, timeout) of any lookup cancels the others
and goes up, so the listener retries the whole change from the old ``Ver``; a refusal
that will not heal (a malformed alias, an unknown errcode) does not block the directory
for ever: the change is reported without a profile, and ``skipped`` is told why.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from relay.core import events as ev
from relay.core.events import Event
from relay.exmail import (
    ExmailClient,
    ExmailError,
    NotFound,
    TokenFenced,
    UserAction,
    UserListEntry,
    is_transient,
)
from relay.runtime.translate import profile_of, user_change

__all__ = ["Enricher"]


class Enricher:
    """Looks up the profiles of changed users for one tenant."""

    def __init__(
        self,
        tenant: str,
        client: ExmailClient,
        *,
        concurrency: int,
        skipped: Callable[[str, str], None],
    ) -> None:
        self.tenant = tenant
        self.client = client
        self._slots = asyncio.Semaphore(concurrency)
        self._skipped = skipped

    async def user_events(
        self, entries: Sequence[UserListEntry], ver: int, now: datetime, *, snapshot: bool
    ) -> list[Event]:
        """One ``user.*`` event per entry, in order; a transient fault goes up."""
        # The first failure cancels the other lookups (the change is retried whole from
        # the old Ver), and every lookup is awaited before the failure goes up. Not an
        # asyncio.TaskGroup: on Python 3.11 a failing child leaves a cancel request on
        # the caller's long-lived task, and the listener's next stop() would escape it.
        tasks = [asyncio.ensure_future(self._one(e, ver, now, snapshot)) for e in entries]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _one(self, entry: UserListEntry, ver: int, now: datetime, snapshot: bool) -> Event:
        profile: dict[str, Any] | None = None
        exists = entry.action is not UserAction.DELETED
        if exists:
            async with self._slots:
                try:
                    profile = profile_of(await self.client.user_get(entry.alias))
                except NotFound:
                    exists = False
                except TokenFenced:
                    raise  # the lease is gone: let the tenant go, commit nothing
                except ExmailError as exc:
                    if is_transient(exc):
                        raise  # the whole change is retried from the old Ver
                    self._skipped("enrich", f"user/get {entry.alias!r}: {exc}")
        return ev.user_changed(
            tenant=self.tenant,
            alias=entry.alias,
            change=user_change(entry, exists=exists, snapshot=snapshot),
            ver=ver,
            profile=profile,
            now=now,
        )
