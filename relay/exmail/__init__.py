"""``relay.exmail``: a typed async client for every operation of the BizMail OpenApi.

The public surface is re-exported here; the private modules behind it are:

- ``_client``: :class:`ExmailClient` (token, HTTP, retries, one method per operation);
- ``_listen``: :func:`parse_listen`, the pure listen-payload parser, and its messages;
- ``_models`` / ``_requests``: tolerant response models and validated request models;
- ``_exceptions``: the error tree (drawn in its docstring) and :func:`is_transient`;
- ``_json``, ``_decode``, ``_validation``, ``_retry``, ``_token``: the pure pieces;
- ``_exchange`` (one HTTP exchange), ``_body`` and ``_fence``: the I/O pieces.

:mod:`relay.exmail2`, the second API's client, reuses these pieces (the exception tree
is one for both).

See ``docs/protocol.md`` for the operation ↔ method table and the parsing decisions.
The request models and the parameter checks are public too (``Request`` and its
subclasses, ``validation``): the API gateway validates a forwarded call with exactly the
checks the client applies.
"""

from relay.exmail import _validation as validation
from relay.exmail._client import ExmailClient
from relay.exmail._exceptions import (
    ApiError,
    Conflict,
    ExmailError,
    ExmailTimeout,
    HTTPStatusError,
    InvalidCredentials,
    InvalidRequest,
    InvalidToken,
    MalformedResponse,
    NetworkError,
    NotFound,
    PermissionDenied,
    RateLimited,
    ResponseTooLarge,
    TemporarilyUnavailable,
    TokenFenced,
    TransportError,
    is_transient,
)
from relay.exmail._fence import fence_trace
from relay.exmail._listen import (
    KeepAlive,
    ListenError,
    ListenMessage,
    Malformed,
    NewMail,
    Unknown,
    UnreadCount,
    VersionUpdate,
    parse_listen,
)
from relay.exmail._models import (
    AccountType,
    ActionCodes,
    CheckResult,
    Gender,
    GroupStatus,
    NewCount,
    OpenType,
    SyncAction,
    User,
    UserAction,
    UserList,
    UserListEntry,
)
from relay.exmail._operations import (
    DEFAULT_API_URL,
    DEFAULT_LOGIN_URL,
    DEFAULT_TOKEN_URL,
    READ_OPERATIONS,
)
from relay.exmail._requests import (
    GroupAddRequest,
    GroupAllowListRequest,
    GroupMembersRequest,
    Params,
    PartySyncRequest,
    UserSyncRequest,
)
from relay.exmail._requests import _Request as Request
from relay.exmail._retry import Backoff
from relay.exmail._token import TokenCache

__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_LOGIN_URL",
    "DEFAULT_TOKEN_URL",
    "READ_OPERATIONS",
    "AccountType",
    "ActionCodes",
    "ApiError",
    "Backoff",
    "CheckResult",
    "Conflict",
    "ExmailClient",
    "ExmailError",
    "ExmailTimeout",
    "Gender",
    "GroupAddRequest",
    "GroupAllowListRequest",
    "GroupMembersRequest",
    "GroupStatus",
    "HTTPStatusError",
    "InvalidCredentials",
    "InvalidRequest",
    "InvalidToken",
    "KeepAlive",
    "ListenError",
    "ListenMessage",
    "Malformed",
    "MalformedResponse",
    "NetworkError",
    "NewCount",
    "NewMail",
    "NotFound",
    "OpenType",
    "Params",
    "PartySyncRequest",
    "PermissionDenied",
    "RateLimited",
    "Request",
    "ResponseTooLarge",
    "SyncAction",
    "TemporarilyUnavailable",
    "TokenCache",
    "TokenFenced",
    "TransportError",
    "Unknown",
    "UnreadCount",
    "User",
    "UserAction",
    "UserList",
    "UserListEntry",
    "UserSyncRequest",
    "VersionUpdate",
    "fence_trace",
    "is_transient",
    "parse_listen",
    "validation",
]
