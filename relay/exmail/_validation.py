"""The protocol's documented limits, checked before a request is sent.

Each check raises :class:`~relay.exmail._exceptions.InvalidRequest` with a message
naming the parameter and the rule. The limits come from the protocol texts:

- account aliases, slaves, group addresses and members are in email form
  (:data:`EMAIL_PATTERN`, at most :data:`MAX_EMAIL_CHARS` characters);
- ``Slave``: at most 5 per account;
- department paths: ``/``-separated, root omitted, at most 5 levels, each level 1 to
  64 characters, no control character, no space at either end (:data:`PARTY_PATH_PATTERN`);
- group names: not blank (:data:`NOT_BLANK_PATTERN`);
- ``user/check``: at most 20 ``email`` per call (the client splits longer lists);
- group ``status``: ``all``, ``inner``, ``group`` or ``list``;
- ``Action``: 1 (DEL), 2 (ADD) or 3 (MOD); ``party/sync`` MOD needs both paths.

Values are never echoed for secret parameters (``Password``).

Each rule that is a pattern is written once, here, as a regular expression that reads the
same in Python and in ECMA-262 (explicit character classes, no ``\\s``/``\\w``): the checks
match it, and the pydantic types :data:`EmailAddress`, :data:`PartyPath` and
:data:`NotBlank` carry it into the JSON Schemas the gateway's OpenAPI document shows
(``pattern``, ``maxLength``), so the document states exactly what is refused. Values are
taken as given: nothing is trimmed, so a value the document allows is never refused
and one it forbids is never quietly repaired.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated

from pydantic import Field

from relay.exmail._exceptions import InvalidRequest
from relay.exmail._models import GroupStatus, SyncAction

__all__ = [
    "EMAIL_PATTERN",
    "MAX_CHECK_EMAILS",
    "MAX_EMAIL_CHARS",
    "MAX_PARTY_LEVELS",
    "MAX_PARTY_NAME_CHARS",
    "MAX_SLAVES",
    "NOT_BLANK_PATTERN",
    "PARTY_PATH_OR_ROOT_PATTERN",
    "PARTY_PATH_PATTERN",
    "EmailAddress",
    "NotBlank",
    "PartyPath",
    "PartyPathOrRoot",
    "check_action",
    "check_email",
    "check_emails",
    "check_group_status",
    "check_not_blank",
    "check_party_path",
    "check_slaves",
]

MAX_SLAVES = 5
MAX_PARTY_LEVELS = 5
MAX_PARTY_NAME_CHARS = 64
MAX_CHECK_EMAILS = 20

MAX_EMAIL_CHARS = 254  # RFC 5321's path limit, less the angle brackets

EMAIL_PATTERN = (
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})+$"
)
"""An address: an ASCII local part (RFC 5322 atext and dots), ``@``, a domain of two or
more labels (letters, digits, hyphens)."""

# A department name: no "/", no control character, no space or control at either end.
_EDGE = r"[^/\x00-\x20\x7f]"
_LEVEL = rf"{_EDGE}(?:[^/\x00-\x1f\x7f]{{0,{MAX_PARTY_NAME_CHARS - 2}}}{_EDGE})?"
PARTY_PATH_PATTERN = rf"^/?{_LEVEL}(?:/{_LEVEL}){{0,{MAX_PARTY_LEVELS - 1}}}/?$"
"""A department: 1 to 5 names joined by ``/``, a leading or trailing ``/`` allowed."""
PARTY_PATH_OR_ROOT_PATTERN = rf"^/?$|{PARTY_PATH_PATTERN}"
"""A department, or the root (empty or ``/``)."""
NOT_BLANK_PATTERN = r"[^\x00-\x20\x7f]"
"""Some character other than a space or a control character."""

_EMAIL = re.compile(EMAIL_PATTERN)
_PARTY_PATH = re.compile(PARTY_PATH_PATTERN)
_NOT_BLANK = re.compile(NOT_BLANK_PATTERN)

EmailAddress = Annotated[str, Field(pattern=EMAIL_PATTERN, max_length=MAX_EMAIL_CHARS)]
PartyPath = Annotated[str, Field(pattern=PARTY_PATH_PATTERN)]
PartyPathOrRoot = Annotated[str, Field(pattern=PARTY_PATH_OR_ROOT_PATTERN)]
NotBlank = Annotated[str, Field(pattern=NOT_BLANK_PATTERN)]


def check_email(param: str, value: str) -> str:
    """``value``, if it is an address (:data:`EMAIL_PATTERN`, :data:`MAX_EMAIL_CHARS`)."""
    if len(value) > MAX_EMAIL_CHARS or not _EMAIL.fullmatch(value):
        raise InvalidRequest(f"{param} must be an email address, got {value[:300]!r}")
    return value


def check_not_blank(param: str, value: str) -> str:
    """``value``, if it holds a character other than a space or a control character."""
    if not _NOT_BLANK.search(value):
        raise InvalidRequest(f"{param} must not be empty or blank")
    return value


def check_emails(param: str, values: Iterable[str]) -> tuple[str, ...]:
    return tuple(check_email(param, value) for value in values)


def check_slaves(values: Iterable[str]) -> tuple[str, ...]:
    slaves = check_emails("Slave", values)
    if len(slaves) > MAX_SLAVES:
        raise InvalidRequest(f"Slave: at most {MAX_SLAVES} aliases, got {len(slaves)}")
    return slaves


def check_party_path(param: str, path: str, *, allow_root: bool = True) -> str:
    """A department path (:data:`PARTY_PATH_PATTERN`) without its leading and trailing
    ``/``; empty or ``/`` is the root, allowed when ``allow_root``."""
    if path in ("", "/"):
        if allow_root:
            return ""
        raise InvalidRequest(f"{param} must name a department, not the root")
    if _PARTY_PATH.fullmatch(path):
        return path.strip("/")
    levels = path.strip("/").split("/")
    if len(levels) > MAX_PARTY_LEVELS:
        raise InvalidRequest(f"{param}: at most {MAX_PARTY_LEVELS} levels, got {len(levels)}")
    for level in levels:
        if not level.strip():
            raise InvalidRequest(f"{param}: empty department name in {path!r}")
        if len(level) > MAX_PARTY_NAME_CHARS:
            raise InvalidRequest(
                f"{param}: department names are at most {MAX_PARTY_NAME_CHARS} characters, "
                f"got {len(level)}"
            )
    raise InvalidRequest(
        f"{param}: department names hold no control character and no space at either end, "
        f"got {path[:400]!r}"
    )


def check_action(value: object) -> SyncAction:
    try:
        return SyncAction(int(str(value)))
    except ValueError:
        raise InvalidRequest(f"Action must be 1 (DEL), 2 (ADD) or 3 (MOD), got {value!r}") from None


def check_group_status(value: str) -> GroupStatus:
    try:
        return GroupStatus(value.strip().lower())
    except ValueError:
        allowed = ", ".join(s.value for s in GroupStatus)
        raise InvalidRequest(f"status must be one of {allowed}, got {value!r}") from None
