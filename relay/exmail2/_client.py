"""``Exmail2Client``: one typed async method per operation of the second API.

Where it sits: beside :class:`relay.exmail.ExmailClient`, for tenants on
``api.exmail.qq.com/cgi-bin/``. It owns three concerns and reuses the first client's
pieces for each:

- the tokens: one :class:`relay.exmail.TokenCache` per application (notes §2), each
  with its single flight, its renewal before ``expires_in`` and the tenant's fence. After
  40001/40014/42001 the failed token is handed back (``refresh(stale)``: under
  concurrency only the first caller fetches) and the call is made once more, writes too
  (the server did not act);
- the HTTP exchange (:func:`relay.exmail._exchange.exchange`): GET with a query or POST
  with a JSON body, ``access_token`` in the query (the API has no header auth), a
  deadline, a size cap, the fence's trace hook, secrets masked out of every answer;
- retries of reads only, on transient faults, with the one :class:`Backoff` policy.

Decoding lives in :mod:`relay.exmail2._decode` and :mod:`relay.exmail2._models`, limits
in :mod:`relay.exmail2._requests`, the operation table in :mod:`relay.exmail2._apps`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

import aiohttp
from pydantic import SecretStr

from relay.exmail._decode import without_secrets
from relay.exmail._exceptions import ExmailError, InvalidRequest, InvalidToken, is_transient
from relay.exmail._exchange import OnRequest, exchange
from relay.exmail._fence import fence_trace, post_options
from relay.exmail._retry import Backoff
from relay.exmail._token import TokenCache
from relay.exmail2._apps import DEFAULT_BASE_URL, OPERATIONS, App
from relay.exmail2._calls import Query
from relay.exmail2._decode import decode_answer, decode_token
from relay.exmail2._directory import DirectoryCalls
from relay.exmail2._services import ServiceCalls

__all__ = ["Exmail2Client"]

T = TypeVar("T")
OnToken = Callable[[App, str], None]
JSON_CONTENT_TYPE = "application/json; charset=utf-8"


class Exmail2Client(DirectoryCalls, ServiceCalls):
    """Async client of the second API for one company (``corpid``) and its app secrets.

    ``secrets`` maps each :class:`App` the tenant enabled to its secret; calling an
    operation of an app without one raises :class:`~relay.exmail.InvalidRequest` and
    sends nothing (LEO's rule). Use as an async context manager; ``session``, when given,
    is used and not closed. ``on_request(operation, seconds, outcome)`` follows every
    HTTP exchange (``gettoken`` included) and ``on_token(app, reason)`` precedes every
    token fetch (``initial``, ``expired``, ``invalid_token``, ``forced``). ``tokens``:
    another client's :attr:`tokens`, to share them. ``token_fence`` (lease mode) guards
    every app's token as in :class:`relay.exmail.ExmailClient`; ``token_pace`` (the
    replica's :meth:`relay.runtime.pacing.Pacer.turn`) is awaited before every token
    fetch of the caches it makes (a fresh cached token never waits; ``[sharding]
    takeover_rate``). Caches handed in with ``tokens`` keep their own fence and pace.
    """

    def __init__(
        self,
        *,
        corpid: str,
        secrets: Mapping[App | str, str | SecretStr],
        base_url: str = DEFAULT_BASE_URL,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 10.0,
        max_response_bytes: int = 16 * 1024 * 1024,
        read_retries: int = 3,
        backoff: Backoff = Backoff(),  # noqa: B008 - a frozen dataclass, safe to share
        on_request: OnRequest | None = None,
        on_token: OnToken | None = None,
        tokens: Mapping[App, TokenCache] | None = None,
        token_fence: Callable[[], bool] | None = None,
        token_pace: Callable[[], Awaitable[None]] | None = None,  # the pacer's turn
        replica: str | None = None,  # sent as X-Relay-Replica (the emulator's request log)
    ) -> None:
        if timeout <= 0 or max_response_bytes <= 0 or read_retries < 0:
            raise ValueError("timeout and max_response_bytes must be positive, read_retries >= 0")
        if not corpid.strip():
            raise ValueError("corpid must not be empty")
        self.corpid = corpid.strip()
        self._secrets: dict[App, SecretStr] = {}
        for app, secret in secrets.items():
            value = secret if isinstance(secret, SecretStr) else SecretStr(secret)
            if value.get_secret_value():
                self._secrets[App(app)] = value
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self.read_retries = read_retries
        self._backoff = backoff
        self._on_request = on_request
        self._replica = {"X-Relay-Replica": replica} if replica else {}
        self._session = session
        self._owns_session = session is None
        self._tokens: dict[App, TokenCache] = dict(tokens or {})
        for app in self._secrets:
            if app not in self._tokens:
                self._tokens[app] = TokenCache(
                    self._fetcher(app),
                    on_token=None if on_token is None else _bind(on_token, app),
                    fence=token_fence,
                    pace=token_pace,
                )
        self._options = {app: post_options(t, session) for app, t in self._tokens.items()}

    def __repr__(self) -> str:
        apps = ",".join(sorted(a.value for a in self._secrets))
        return f"Exmail2Client(corpid={self.corpid!r}, apps=[{apps}], base_url={self.base_url!r})"

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

    # -- tokens ------------------------------------------------------------------

    @property
    def apps(self) -> frozenset[App]:
        """The applications this client holds a secret for."""
        return frozenset(self._secrets)

    @property
    def tokens(self) -> Mapping[App, TokenCache]:
        """The token cache of each app; hand it to another client (``tokens=``) to share."""
        return dict(self._tokens)

    def _cache(self, app: App) -> TokenCache:
        cache = self._tokens.get(app)
        if cache is None or app not in self._secrets:
            raise InvalidRequest(f"no secret configured for the {app.value} application")
        return cache

    async def token(self, app: App | str, *, force: bool = False) -> str:
        """The current access token of ``app`` (fetched if needed, or anew with ``force``)."""
        return (await self._cache(App(app)).get(force=force)).get_secret_value()

    def _fetcher(self, app: App) -> Callable[[], Any]:
        async def fetch() -> tuple[SecretStr, float]:
            secret = self._secrets[app].get_secret_value()
            query = [("corpid", self.corpid), ("corpsecret", secret)]
            status, body = await self._send(app, "gettoken", "GET", query, None)
            return decode_token(status, without_secrets(body, secret))

        return fetch

    # -- HTTP --------------------------------------------------------------------

    async def _send(
        self, app: App, operation: str, method: str, query: Query, body: bytes | None
    ) -> tuple[int, bytes]:
        headers = dict(self._replica)
        if body is not None:
            headers["Content-Type"] = JSON_CONTENT_TYPE
        return await exchange(
            self._get_session(),
            method,
            operation,
            self.base_url + operation,
            query=query,
            body=body,
            headers=headers,
            total=self.timeout,
            connect=self.timeout,
            max_response_bytes=self.max_response_bytes,
            options=self._options[app],
            on_request=self._on_request,
        )

    async def _once(
        self, operation: str, query: Query, body: Mapping[str, Any] | None, token: SecretStr
    ) -> dict[str, Any]:
        spec = OPERATIONS[operation]
        payload = None
        if spec.method == "POST":
            payload = json.dumps(body or {}, ensure_ascii=False, separators=(",", ":")).encode()
        secret = token.get_secret_value()
        full = [("access_token", secret), *query]
        status, raw = await self._send(spec.app, operation, spec.method, full, payload)
        raw = without_secrets(raw, secret, self._secrets[spec.app].get_secret_value())
        return decode_answer(operation, status, raw)

    async def _authorized(
        self, operation: str, query: Query, body: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        """One call; after 40001/40014/42001, one new token and one retry."""
        cache = self._cache(OPERATIONS[operation].app)
        token = await cache.get()
        try:
            return await self._once(operation, query, body, token)
        except InvalidToken:
            token = await cache.refresh(token)
            return await self._once(operation, query, body, token)

    async def _call(
        self,
        operation: str,
        *,
        query: Query | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """An operation of the table; reads retry transient faults with backoff."""
        spec = OPERATIONS[operation]
        attempt = 0
        while True:
            try:
                return await self._authorized(operation, query or [], body)
            except ExmailError as exc:
                if not spec.read or attempt >= self.read_retries or not is_transient(exc):
                    raise
            await asyncio.sleep(self._backoff.delay(attempt))
            attempt += 1

    async def call(
        self,
        operation: str,
        *,
        query: Mapping[str, str | int] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Any operation of :data:`~relay.exmail2.OPERATIONS` with raw parameters; the
        answer's object (``errcode`` 0). Reads are retried on transient faults."""
        name = operation.strip().strip("/").lower().removeprefix("cgi-bin/")
        if name not in OPERATIONS:
            raise InvalidRequest(f"{name!r} is not an operation of the second API")
        pairs = [(k, str(v)) for k, v in (query or {}).items()]
        return await self._call(name, query=pairs, body=body)


def _bind(on_token: OnToken, app: App) -> Callable[[str], None]:
    return lambda reason: on_token(app, reason)
