"""The access-token cache: one token per client, fetched by one caller at a time.

Only one access token is valid per administrator account: every fetch invalidates the
previous token. So the cache must never fetch more often than needed:

- concurrent callers that find no valid token share one fetch (single flight);
- after a 1200 the caller passes the token that failed (``refresh(stale)``): if another
  caller already replaced it, the new one is returned without a second fetch;
- a token is renewed shortly before ``expires_in`` runs out (10 % of the lifetime, at
  most 60 s early), so calls do not race the expiry.

Under shard leases, the token is the fence between replicas: a new owner's fetch
invalidates the old owner's token. ``fence()``, when given, is asked on *every* path
that hands out a token or fetches one: on entry, again after waiting for the lock (a
caller may have waited there while the lease went), before every fetch (the first, a
renewal, the one after a 1200). If it says no (this replica does not hold the tenant's
lease), nothing is handed out or fetched and :class:`~relay.exmail.TokenFenced` is
raised. The client asks the same fence once more at the moment a request leaves
(:meth:`TokenCache.admit`, from its trace hook), so a request that waited for a pooled
connection or a connect while the lease was lost never leaves either.

Borrowers (the gateway's token service) cannot churn the token: ``refresh(stale,
min_age=...)`` fetches only when the current token is at least ``min_age`` seconds old
or the relay itself saw Exmail refuse it (:meth:`TokenCache.refresh` without
``min_age``, the client's path after a 1200); otherwise it answers the current token.

Pacing (``[sharding] takeover_rate``): ``pace()``, when given, is awaited before every
fetch, so a replica that starts or takes over many tenants never sends more fetches a
second than the pacer allows (:class:`relay.runtime.pacing.Pacer`). A caller that has
already taken its turn fetches with ``get(paced=False)`` (:meth:`TokenCache.turn` does
both: the listener's start-up); a token that is cached and fresh never waits.

The fetch itself is injected (the client's HTTP code), so this module has no I/O.

The second API's client (:class:`relay.exmail2.Exmail2Client`) keeps one cache per
application. Whether that API keeps one valid token per application is not known (its
notes §11 q3); the rules above are right either way: they never fetch while a token is
valid, and after a refusal exactly one caller fetches.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from pydantic import SecretStr

from relay.exmail._exceptions import TokenFenced

__all__ = ["TokenCache"]

Fetch = Callable[[], Awaitable[tuple[SecretStr, float]]]
"""Returns the new token and its lifetime in seconds."""


class TokenCache:
    def __init__(
        self,
        fetch: Fetch,
        *,
        on_token: Callable[[str], None] | None = None,
        fence: Callable[[], bool] | None = None,
        pace: Callable[[], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._pace = pace
        self._on_token = on_token
        self._fence = fence
        self._clock = clock
        self._token: SecretStr | None = None
        self._expires_at = 0.0
        self._fetched_at = 0.0
        # The relay's own call saw Exmail refuse the current token (a borrower may then
        # have it replaced however young it is).
        self._rejected = False
        self._generation = 0
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        state = "empty" if self._token is None else f"generation {self._generation}"
        return f"<TokenCache {state}>"

    @property
    def fetches(self) -> int:
        """How many tokens this cache has fetched."""
        return self._generation

    def current(self) -> SecretStr | None:
        """The token, if one is held and not due for renewal; never fetches."""
        return self._token if self._valid() else None

    @property
    def expires_in(self) -> float:
        """Seconds until the held token is renewed (0 when there is none).

        This is the renewal time, a little before the server's expiry, so a client that
        is handed the token with this lifetime comes back before the server refuses it.
        """
        return max(self._expires_at - self._clock(), 0.0) if self._token is not None else 0.0

    @property
    def fenced(self) -> bool:
        """Whether a fence guards this cache (lease mode)."""
        return self._fence is not None

    @property
    def age(self) -> float | None:
        """Seconds since the held token was fetched (``None``: none is held)."""
        return None if self._token is None else max(self._clock() - self._fetched_at, 0.0)

    def _valid(self) -> bool:
        return self._token is not None and self._clock() < self._expires_at

    @property
    def paced(self) -> bool:
        """Whether fetches wait for a turn (``[sharding] takeover_rate``)."""
        return self._pace is not None

    async def turn(self) -> SecretStr:
        """Wait for a turn of the pacer (at once without one) and return a token got in
        it (the cached one if fresh, else fetched without waiting again): a listener's
        start-up, which bootstraps in the same turn."""
        if self._pace is not None:
            await self._pace()
        return await self.get(paced=False)

    def admit(self) -> None:
        """Raise :class:`TokenFenced` unless the fence (if any) says this replica holds
        the tenant's lease now. Every path that hands out a token asks it; the client
        asks it again as a request leaves."""
        if self._fence is not None and not self._fence():
            raise TokenFenced("no token: this replica does not hold the tenant's lease")

    async def get(self, *, force: bool = False, paced: bool = True) -> SecretStr:
        """A valid token; fetched when there is none, it expired, or ``force``. With a
        fence that says no, not even a cached one (:class:`TokenFenced`). A fetch waits
        for its turn unless ``paced`` is False (the caller took it)."""
        self.admit()
        if not force and self._valid():
            assert self._token is not None
            return self._token
        seen = self._generation
        async with self._lock:
            self.admit()  # the lease may have gone while we waited for the lock
            if self._token is not None and self._generation != seen:
                return self._token  # someone fetched while we waited
            if not force and self._valid():
                assert self._token is not None
                return self._token
            reason = "forced" if force else ("initial" if self._token is None else "expired")
            return await self._renew(reason, paced=paced)

    async def refresh(self, stale: SecretStr, *, min_age: float | None = None) -> SecretStr:
        """A token other than ``stale``, which the server refused with 1200; raises
        :class:`~relay.exmail.TokenFenced` instead when the fence says no.

        Without ``min_age`` the caller is the relay itself, which saw the refusal: a
        new token is fetched if ``stale`` is still the current one. With ``min_age`` the
        caller is a borrower (the token service), whose word is not proof: the current
        token is fetched anew only if it is at least ``min_age`` seconds old, no longer
        valid, or the relay itself saw Exmail refuse it; otherwise it is the answer.
        """
        async with self._lock:
            self.admit()
            current = self._token
            if current is None or current.get_secret_value() != stale.get_secret_value():
                if current is not None:
                    return current
                return await self._renew("initial")
            if min_age is None:
                self._rejected = True
            elif not self._rejected and self._valid() and (self.age or 0.0) < min_age:
                return current  # a borrower's word alone does not void a young token
            return await self._renew("invalid_token")

    def invalidate(self) -> None:
        """Forget the token (the next call fetches a new one)."""
        self._token = None
        self._expires_at = 0.0

    async def _renew(self, reason: str, *, paced: bool = True) -> SecretStr:
        if paced and self._pace is not None:
            await self._pace()  # the fence below is asked after the wait
        if self._fence is not None and not self._fence():
            raise TokenFenced("no token fetched: this replica does not hold the tenant's lease")
        if self._on_token is not None:
            self._on_token(reason)
        token, lifetime = await self._fetch()
        # The fetch took a round trip: the lease may have gone meanwhile. The token is
        # kept (it is the newest; forgetting it changes nothing upstream) but not handed out.
        margin = min(60.0, max(lifetime, 0.0) * 0.1)
        self._token = token
        self._fetched_at = self._clock()
        self._rejected = False
        self._expires_at = self._clock() + max(lifetime - margin, 0.0)
        self._generation += 1
        self.admit()
        return token
