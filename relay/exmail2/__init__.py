"""``relay.exmail2``: a typed async client for the second Exmail API (``api.exmail.qq.com``).

The API of ``https://api.exmail.qq.com/cgi-bin/`` (``shared/spec/EXMAIL-API-2-NOTES.md``):
a company (``corpid``) with one secret, and so one token, per application; JSON answers
``{"errcode", "errmsg", ...}``; 64-bit department ids. The public surface is re-exported
here; the private modules behind it are:

- ``_client``: :class:`Exmail2Client` (tokens per app, HTTP, retries), with the typed
  operations of ``_directory`` (departments, members, groups, tags) and ``_services``
  (SSO, new-mail count, logs, feature settings) mixed in;
- ``_apps``: :class:`App` and the operation table :data:`OPERATIONS`;
- ``_models`` / ``_requests``: tolerant answer models and checked request bodies;
- ``_decode`` and ``_errors``: the envelope and the errcode -> exception mapping.

It reuses :mod:`relay.exmail`'s pieces rather than copying them: the exception tree
(``relay.exmail.ExmailError`` and below), the token cache with its single flight and
fence (:class:`relay.exmail.TokenCache`), the request fence's trace hook
(:func:`relay.exmail.fence_trace`), the HTTP exchange, the tolerant JSON reader, and the
one retry policy (:class:`relay.exmail.Backoff`). See ``docs/protocol.md``, "The second
API", for the operation table and what was decided for each open question of the notes.
"""

from relay.exmail2._apps import DEFAULT_BASE_URL, OPERATIONS, App, Operation, app_of
from relay.exmail2._client import Exmail2Client
from relay.exmail2._decode import decode_answer, decode_token, parse_object
from relay.exmail2._errors import TOKEN_CODES, api2_error, errcode_of
from relay.exmail2._models import (
    AllowType,
    BatchJobEntry,
    CheckEntry,
    Department,
    Group,
    LoginLogEntry,
    LoginUrl,
    MailLogEntry,
    MailStatus,
    Member,
    MemberBrief,
    OperationLogEntry,
    Tag,
    TagChange,
    TagMembers,
    UserOption,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "OPERATIONS",
    "TOKEN_CODES",
    "AllowType",
    "App",
    "BatchJobEntry",
    "CheckEntry",
    "Department",
    "Exmail2Client",
    "Group",
    "LoginLogEntry",
    "LoginUrl",
    "MailLogEntry",
    "MailStatus",
    "Member",
    "MemberBrief",
    "Operation",
    "OperationLogEntry",
    "Tag",
    "TagChange",
    "TagMembers",
    "UserOption",
    "api2_error",
    "app_of",
    "decode_answer",
    "decode_token",
    "errcode_of",
    "parse_object",
]
