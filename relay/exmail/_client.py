"""``ExmailClient``: one typed async method per BizMail OpenApi operation.

Where it sits: the relay's listener and the ``api``/``sso-url`` commands talk to Exmail
only through this class. It owns three concerns and delegates the rest:

- the token (:mod:`relay.exmail._token`): cached, single flight, renewed once after a
  1200 ``invalid_token`` and the failed call retried once (writes too: a 1200 means the
  server did not act);
- the HTTP exchange: POST form bodies, a deadline on every call, bodies read with a size
  cap, aiohttp exceptions translated into :mod:`relay.exmail._exceptions`;
- retries of reads only, on transient faults, with the pure :class:`Backoff` policy.
  Writes are never retried blindly, and ``listen`` is not retried at all: its caller
  owns that loop.

Parsing lives in :mod:`relay.exmail._models` and :mod:`relay.exmail._listen`, limits in
:mod:`relay.exmail._validation` and :mod:`relay.exmail._requests`.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, Self, TypeVar
from urllib.parse import urlencode

import aiohttp
from pydantic import SecretStr, ValidationError

from relay.exmail import _validation as v
from relay.exmail._decode import (
    decode_empty,
    decode_listen,
    decode_object,
    decode_token,
    decode_value,
    model_decoder,
    raise_error_body,
    shape_error,
    without_secrets,
)
from relay.exmail._exceptions import (
    ExmailError,
    HTTPStatusError,
    InvalidToken,
    MalformedResponse,
    is_transient,
)
from relay.exmail._exchange import OnRequest, exchange
from relay.exmail._fence import fence_trace, post_options
from relay.exmail._listen import ListenMessage
from relay.exmail._models import (
    ActionCodes,
    AuthKeyResponse,
    CheckResponse,
    CheckResult,
    Gender,
    GroupStatus,
    NewCount,
    OpenType,
    SyncAction,
    User,
    UserList,
    ValueList,
)
from relay.exmail._operations import (
    DEFAULT_API_URL,
    DEFAULT_LOGIN_URL,
    DEFAULT_TOKEN_URL,
    FORM_CONTENT_TYPE,
    READ_OPERATIONS,
    sso_url,
)
from relay.exmail._requests import (
    GroupAddRequest,
    GroupAllowListRequest,
    GroupMembersRequest,
    Params,
    PartySyncRequest,
    UserSyncRequest,
)
from relay.exmail._retry import Backoff
from relay.exmail._token import TokenCache

__all__ = ["ExmailClient"]

T = TypeVar("T")
OnToken = Callable[[str], None]


class ExmailClient:
    """Async client of the BizMail OpenApi for one administrator account (one tenant).

    Use as an async context manager. ``session``, when given, is used and not closed.
    ``on_request(operation, seconds, outcome)`` is called after every HTTP exchange and
    ``on_token(reason)`` before every token fetch (``initial``, ``expired``,
    ``invalid_token``, ``forced``); both are plain observers for metrics. ``tokens``: another
    client's :attr:`tokens`, so both use one token (one valid per account) and ``on_token``
    is that client's. A ``listen`` answer's strings over ``max_field_bytes`` (at most
    ``max_response_bytes``) are cut as they arrive and the mail says so
    (:mod:`relay.exmail._cut`); ``max_response_bytes`` caps every answer as kept.
    """

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str | SecretStr,
        api_url: str = DEFAULT_API_URL,
        token_url: str = DEFAULT_TOKEN_URL,
        login_url: str = DEFAULT_LOGIN_URL,
        auth_method: Literal["form", "basic"] = "form",
        action_codes: ActionCodes = "authority",
        session: aiohttp.ClientSession | None = None,
        timeout: float = 10.0,
        listen_timeout: float = 30.0,
        max_response_bytes: int = 4 * 1024 * 1024,
        max_field_bytes: int = 64 * 1024,
        read_retries: int = 3,
        backoff: Backoff = Backoff(),  # noqa: B008 - a frozen dataclass, safe to share
        on_request: OnRequest | None = None,
        on_token: OnToken | None = None,
        tokens: TokenCache | None = None,
        token_fence: Callable[[], bool] | None = None,
        token_pace: Callable[[], Awaitable[None]] | None = None,  # the pacer's turn
        replica: str | None = None,  # sent as X-Relay-Replica (the emulator's request log)
    ) -> None:
        if auth_method not in ("form", "basic"):
            raise ValueError(f"auth_method must be 'form' or 'basic', got {auth_method!r}")
        if action_codes not in ("authority", "v1.4"):
            raise ValueError(f"action_codes must be 'authority' or 'v1.4', got {action_codes!r}")
        if timeout <= 0 or listen_timeout <= 0 or max_response_bytes <= 0 or read_retries < 0:
            raise ValueError("timeouts and max_response_bytes must be positive, read_retries >= 0")
        if max_field_bytes < 16:
            raise ValueError("max_field_bytes must be at least 16")
        self.client_id = client_id
        self._secret = (
            client_secret if isinstance(client_secret, SecretStr) else SecretStr(client_secret)
        )
        self.api_url = api_url if api_url.endswith("/") else api_url + "/"
        self.token_url = token_url
        self.login_url = login_url
        self.auth_method = auth_method
        self.action_codes: ActionCodes = action_codes
        self.timeout = timeout
        self.listen_timeout = listen_timeout
        self.max_response_bytes = max_response_bytes
        self.max_field_bytes = min(max_field_bytes, max_response_bytes)
        self.read_retries = read_retries
        self._backoff = backoff
        self._on_request = on_request
        self._replica = {"X-Relay-Replica": replica} if replica else {}
        self._session = session
        self._owns_session = session is None
        cache = TokenCache(self._fetch_token, on_token=on_token, fence=token_fence, pace=token_pace)
        self._tokens = tokens or cache
        self._post_options = post_options(self._tokens, session)  # the fence goes along

    def __repr__(self) -> str:
        return f"ExmailClient(client_id={self.client_id!r}, api_url={self.api_url!r})"

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

    # -- token -------------------------------------------------------------------

    @property
    def tokens(self) -> TokenCache:
        """The token cache; hand it to a second client (``tokens=``) to share the token."""
        return self._tokens

    async def token(self, *, force: bool = False) -> str:
        """The current access token (fetched if needed, or anew with ``force``)."""
        return (await self._tokens.get(force=force)).get_secret_value()

    async def _fetch_token(self) -> tuple[SecretStr, float]:
        data: Params = [("grant_type", "client_credentials")]
        headers: dict[str, str] = {}
        secret = self._secret.get_secret_value()
        if self.auth_method == "basic":
            raw = f"{self.client_id}:{secret}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode("ascii")
        else:
            data += [("client_id", self.client_id), ("client_secret", secret)]
        status, body = await self._exchange("token", self.token_url, data, headers, None)
        return decode_token(status, without_secrets(body, secret))

    async def _exchange(
        self,
        operation: str,
        url: str,
        data: Params,
        headers: Mapping[str, str],
        read_timeout: float | None,
    ) -> tuple[int, bytes]:
        """POST a form; (status, capped body). ``read_timeout``: a longer deadline (listen);
        passing it with no answer is an :class:`ExmailTimeout`, never "nothing happened"."""
        # Encoded here rather than handed to aiohttp as a form: aiohttp builds a
        # multipart writer (and a random boundary) for every form, even a urlencoded one.
        return await exchange(
            self._get_session(),
            "POST",
            operation,
            url,
            body=urlencode(data).encode(),
            headers={**headers, **self._replica, "Content-Type": FORM_CONTENT_TYPE},
            total=read_timeout if read_timeout is not None else self.timeout,
            connect=self.timeout,
            max_response_bytes=self.max_response_bytes,
            # A listen answer is never dropped whole: its long strings are cut.
            max_field_bytes=self.max_field_bytes if operation == "listen" else None,
            options=self._post_options,
            on_request=self._on_request,
        )

    async def _api(
        self,
        operation: str,
        params: Params,
        decode: Callable[[str, bytes], T],
        *,
        read_timeout: float | None = None,
    ) -> T:
        """One authorized call; after a 1200, one new token and one retry."""
        token = await self._tokens.get()
        try:
            return await self._api_once(operation, params, decode, token, read_timeout)
        except InvalidToken:
            token = await self._tokens.refresh(token)
            return await self._api_once(operation, params, decode, token, read_timeout)

    async def _api_once(
        self,
        operation: str,
        params: Params,
        decode: Callable[[str, bytes], T],
        token: SecretStr,
        read_timeout: float | None,
    ) -> T:
        headers = {"Authorization": f"Bearer {token.get_secret_value()}"}
        url = self.api_url + operation
        status, body = await self._exchange(operation, url, params, headers, read_timeout)
        body = without_secrets(body, self._secret.get_secret_value(), token.get_secret_value())
        if not 200 <= status < 300:
            raise_error_body(operation, body)  # e.g. a 401 carrying 1200
            raise HTTPStatusError(f"{operation}: HTTP {status}", status=status)
        return decode(operation, body)

    async def _read(self, operation: str, params: Params, decode: Callable[[str, bytes], T]) -> T:
        """A read: transient faults are retried with capped, jittered backoff."""
        attempt = 0
        while True:
            try:
                return await self._api(operation, params, decode)
            except ExmailError as exc:
                if attempt >= self.read_retries or not is_transient(exc):
                    raise
            await asyncio.sleep(self._backoff.delay(attempt))
            attempt += 1

    async def _write(self, operation: str, params: Params) -> None:
        await self._api(operation, params, decode_empty)

    # -- raw ---------------------------------------------------------------------

    async def call(
        self, operation: str, params: Mapping[str, str | Sequence[str]]
    ) -> dict[str, Any] | None:
        """Call any operation with raw parameters (lists become repeated parameters).

        Returns the decoded JSON object, or ``None`` for an empty body. Reads
        (:data:`READ_OPERATIONS`) are retried on transient faults; others are not.
        """
        operation = operation.strip().strip("/")
        if operation.startswith("openapi/"):
            operation = operation.removeprefix("openapi/")
        form: Params = []
        for key, value in params.items():
            if isinstance(value, str):
                form.append((key, value))
            else:
                form += [(key, item) for item in value]
        if operation in READ_OPERATIONS:
            return await self._read(operation, form, decode_object)
        return await self._api(operation, form, decode_object)

    # -- listen ------------------------------------------------------------------

    async def listen(
        self,
        ver: int | str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - it is the server's hold, not a cancel scope
    ) -> list[ListenMessage]:
        """One long poll. ``[]`` when the server sent an empty body; no answer before the
        deadline (``timeout``, default ``listen_timeout``) raises :class:`ExmailTimeout`.

        Not retried here. A body made only of error objects raises the matching
        :class:`ApiError` (a 1200 first renews the token and polls once more); error
        objects among other messages come back as :class:`ListenError` items.
        """
        deadline = self.listen_timeout if timeout is None else timeout
        return await self._api("listen", [("Ver", str(ver))], decode_listen, read_timeout=deadline)

    # -- directory: users --------------------------------------------------------

    async def user_get(self, alias: str) -> User:
        alias = v.check_email("Alias", alias)
        return await self._read("user/get", [("Alias", alias)], model_decoder(User))

    async def user_sync(
        self,
        action: SyncAction | int,
        alias: str,
        *,
        name: str | None = None,
        gender: Gender | int | None = None,
        position: str | None = None,
        tel: str | None = None,
        mobile: str | None = None,
        ext_id: str | None = None,
        password: str | SecretStr | None = None,
        md5: bool | None = None,
        party_paths: Sequence[str] | None = None,
        slaves: Sequence[str] | None = None,
        open_type: OpenType | int | None = None,
    ) -> None:
        """Add (2), modify (3) or delete (1) an account; omitted fields are not sent."""
        request = UserSyncRequest.model_validate(
            {
                "action": action,
                "alias": alias,
                "name": name,
                "gender": gender,
                "position": position,
                "tel": tel,
                "mobile": mobile,
                "ext_id": ext_id,
                "password": password,
                "md5": md5,
                "party_paths": party_paths,
                "slaves": slaves,
                "open_type": open_type,
            }
        )
        await self._write("user/sync", request.params())

    async def user_list(self, ver: int | str) -> UserList:
        """Accounts changed since ``ver`` (``0``: every account), and the new version."""
        context = {"action_codes": self.action_codes}

        def decode(operation: str, body: bytes) -> UserList:
            value = decode_value(operation, body)
            try:
                return UserList.model_validate(value, context=context)
            except ValidationError as exc:
                raise MalformedResponse(shape_error(operation, exc)) from None

        return await self._read("user/list", [("Ver", str(ver))], decode)

    async def user_check(self, emails: Iterable[str]) -> list[CheckResult]:
        """What holds each address; more than 20 are split into several calls."""
        items = [e.strip() for e in emails]
        out: list[CheckResult] = []
        for start in range(0, len(items), v.MAX_CHECK_EMAILS):
            chunk = items[start : start + v.MAX_CHECK_EMAILS]
            reply = await self._read(
                "user/check", [("email", e) for e in chunk], model_decoder(CheckResponse)
            )
            out += reply.entries
        return out

    async def user_open_wx_token(self, alias: str) -> None:
        """Force the WeChat one-time password on for an account (v1.4)."""
        await self._write("user/openwxtoken", [("alias", v.check_email("alias", alias))])

    async def user_close_wx_token(self, alias: str) -> None:
        """Stop forcing the WeChat one-time password for an account (v1.4)."""
        await self._write("user/closewxtoken", [("alias", v.check_email("alias", alias))])

    # -- mail --------------------------------------------------------------------

    async def mail_newcount(self, alias: str) -> NewCount:
        alias = v.check_email("Alias", alias)
        return await self._read("mail/newcount", [("Alias", alias)], model_decoder(NewCount))

    async def mail_authkey(self, alias: str) -> str:
        alias = v.check_email("Alias", alias)
        reply = await self._read("mail/authkey", [("Alias", alias)], model_decoder(AuthKeyResponse))
        return reply.auth_key

    async def sso_login_url(self, email: str) -> str:
        """A one-click login URL into ``email``'s mailbox (fetches a fresh authkey)."""
        ticket = await self.mail_authkey(email)
        return sso_url(self.login_url, agent=self.client_id, user=email.strip(), ticket=ticket)

    # -- departments -------------------------------------------------------------

    async def party_sync(
        self, action: SyncAction | int, *, src_path: str | None = None, dst_path: str | None = None
    ) -> None:
        """Add (2) or delete (1) ``dst_path``; modify (3) moves ``src_path`` to ``dst_path``."""
        request = PartySyncRequest.model_validate(
            {"action": action, "src_path": src_path, "dst_path": dst_path}
        )
        await self._write("party/sync", request.params())

    async def party_list(self, path: str = "") -> list[str]:
        """Names of the direct sub-departments of ``path`` (``""``: the root)."""
        path = v.check_party_path("PartyPath", path)
        reply = await self._read("party/list", [("PartyPath", path)], model_decoder(ValueList))
        return list(reply.values)

    async def partyuser_list(self, path: str = "") -> list[str]:
        """Accounts in the department ``path`` (``""``: the root)."""
        path = v.check_party_path("PartyPath", path)
        reply = await self._read("partyuser/list", [("PartyPath", path)], model_decoder(ValueList))
        return list(reply.values)

    # -- mail groups -------------------------------------------------------------

    async def group_add(
        self, name: str, admin: str, status: GroupStatus | str, members: Sequence[str]
    ) -> None:
        request = GroupAddRequest.model_validate(
            {"name": name, "admin": admin, "status": status, "members": members}
        )
        await self._write("group/add", request.params())

    async def group_delete(self, alias: str) -> None:
        await self._write("group/delete", [("group_alias", v.check_email("group_alias", alias))])

    async def group_add_members(self, alias: str, members: Sequence[str]) -> None:
        request = GroupMembersRequest.model_validate({"alias": alias, "members": members})
        await self._write("group/addmember", request.params())

    async def group_delete_members(self, alias: str, members: Sequence[str]) -> None:
        request = GroupMembersRequest.model_validate({"alias": alias, "members": members})
        await self._write("group/deletemember", request.params())

    async def group_add_allow_list(self, alias: str, allow_list: Sequence[str]) -> None:
        """Allow addresses to send to a ``list``-status group (v1.4)."""
        request = GroupAllowListRequest.model_validate({"alias": alias, "allow_list": allow_list})
        await self._write("group/addallowlist", request.params())

    async def group_del_allow_list(self, alias: str, allow_list: Sequence[str]) -> None:
        """Remove addresses from a group's allow list; it may not become empty (v1.4)."""
        request = GroupAllowListRequest.model_validate({"alias": alias, "allow_list": allow_list})
        await self._write("group/delallowlist", request.params())
