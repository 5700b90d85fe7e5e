"""The protocol's documented limits, checked before a request is sent.

Each check raises :class:`~relay.exmail._exceptions.InvalidRequest` with a message
naming the parameter and the rule. The limits come from the protocol texts:

- account aliases, slaves, group addresses and members are in email form;
- ``Slave``: at most 5 per account;
- department paths: ``/``-separated, root omitted, at most 5 levels, each level at most
  64 characters and not empty;
- ``user/check``: at most 20 ``email`` per call (the client splits longer lists);
- group ``status``: ``all``, ``inner``, ``group`` or ``list``;
- ``Action``: 1 (DEL), 2 (ADD) or 3 (MOD); ``party/sync`` MOD needs both paths.

Values are never echoed for secret parameters (``Password``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from relay.exmail._exceptions import InvalidRequest
from relay.exmail._models import GroupStatus, SyncAction

__all__ = [
    "MAX_CHECK_EMAILS",
    "MAX_PARTY_LEVELS",
    "MAX_PARTY_NAME_CHARS",
    "MAX_SLAVES",
    "check_action",
    "check_email",
    "check_emails",
    "check_group_status",
    "check_party_path",
    "check_slaves",
]

MAX_SLAVES = 5
MAX_PARTY_LEVELS = 5
MAX_PARTY_NAME_CHARS = 64
MAX_CHECK_EMAILS = 20

_EMAIL = re.compile(r"[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>.]+")


def check_email(param: str, value: str) -> str:
    """``value`` stripped, if it is an address in email form."""
    value = value.strip()
    if not _EMAIL.fullmatch(value):
        raise InvalidRequest(f"{param} must be an email address, got {value!r}")
    return value


def check_emails(param: str, values: Iterable[str]) -> tuple[str, ...]:
    return tuple(check_email(param, value) for value in values)


def check_slaves(values: Iterable[str]) -> tuple[str, ...]:
    slaves = check_emails("Slave", values)
    if len(slaves) > MAX_SLAVES:
        raise InvalidRequest(f"Slave: at most {MAX_SLAVES} aliases, got {len(slaves)}")
    return slaves


def check_party_path(param: str, path: str, *, allow_root: bool = True) -> str:
    """A department path with stray slashes trimmed; empty means the root."""
    path = path.strip().strip("/")
    if not path:
        if allow_root:
            return ""
        raise InvalidRequest(f"{param} must name a department, not the root")
    levels = path.split("/")
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
    return path


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
