"""Translation: what Exmail pushes, turned into relay events. Pure, no I/O.

Where it sits: between the Exmail client's parsed messages (:mod:`relay.exmail`) and
the relay's events (:mod:`relay.core.events`). The listener
(:mod:`relay.runtime.listener`) moves the bytes and owns the waiting; every decision
about what a push means is made here:

- :func:`translate_listen` sorts one ``listen`` answer into the events to commit now
  (new mail, unread counts), the newest version update (if any, and only if it moves
  the Ver), and the messages to log and skip, with the reason;
- :func:`user_change` decides whether one ``user/list`` entry is an addition, an
  update or a deletion, from the listed action and whether ``user/get`` still finds
  the account (the action codes contradict each other between the protocol's two
  texts, so existence is what counts);
- :func:`profile_of` is the JSON-ready profile an ``exmail.user.*`` event carries.

It lives in the runtime layer, not the core, because it speaks the Exmail client's
types, and the client itself builds on the core.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from relay.core import events as ev
from relay.core.events import Event
from relay.exmail import (
    KeepAlive,
    ListenError,
    ListenMessage,
    Malformed,
    NewMail,
    Unknown,
    UnreadCount,
    User,
    UserAction,
    UserListEntry,
    VersionUpdate,
)

__all__ = ["Skipped", "Translation", "profile_of", "translate_listen", "user_change"]


@dataclass(frozen=True, slots=True)
class Skipped:
    """A message that is logged and counted, never turned into an event."""

    kind: str  # malformed, error, unknown
    detail: str


@dataclass(frozen=True, slots=True)
class Translation:
    """One ``listen`` answer, sorted."""

    events: list[Event] = field(default_factory=list)
    update: VersionUpdate | None = None
    skipped: list[Skipped] = field(default_factory=list)
    # Nothing usable came back: the answer held messages and every one was malformed.
    # The listener treats that as a fault (backoff), so a broken answer is no hot loop.
    unreadable: bool = False
    # The fields cut to max_field_bytes, one entry per cut field (counted by the listener).
    truncated: list[str] = field(default_factory=list)


def translate_listen(
    tenant: str,
    ver: int,
    messages: Sequence[ListenMessage],
    *,
    now: datetime,
    last_mail: MutableMapping[str, str] | None = None,
) -> Translation:
    """Sort one ``listen`` answer for ``tenant``, whose current directory Ver is ``ver``.

    ``last_mail`` (account, lower case -> MailId of its newest reminder seen) is what an
    unread count's id is anchored on; it is updated by the reminders of this answer.
    """
    if last_mail is None:
        last_mail = {}
    built: list[Event] = []
    skipped: list[Skipped] = []
    update: VersionUpdate | None = None
    truncated: list[str] = []
    for message in messages:
        match message:
            case NewMail():
                last_mail[message.user.lower()] = message.mail_id
                built.append(
                    ev.mail_new(
                        tenant=tenant,
                        user=message.user,
                        mail_id=message.mail_id,
                        sender=message.sender,
                        receiver=message.receiver,
                        subject=message.subject,
                        summary=message.summary,
                        unread=message.new_count,
                        now=now,
                        truncated=message.truncated,
                    )
                )
                truncated.extend(message.truncated)
            case UnreadCount():
                built.append(
                    ev.mail_unread(
                        tenant=tenant,
                        user=message.user,
                        unread=message.new_count,
                        after_mail=last_mail.get(message.user.lower()),
                        now=now,
                    )
                )
            case VersionUpdate():
                if message.ver != ver and (update is None or message.ver > update.ver):
                    update = message
            case KeepAlive():
                pass
            case ListenError():
                skipped.append(Skipped("error", f"errcode {message.errcode}: {message.error}"))
            case Unknown():
                skipped.append(Skipped("unknown", f"keys {sorted(message.raw)[:10]}"))
            case Malformed():
                skipped.append(Skipped("malformed", f"{message.reason}: {message.excerpt[:120]!r}"))
    unreadable = bool(messages) and all(isinstance(m, Malformed) for m in messages)
    return Translation(built, update, skipped, unreadable, truncated)


def user_change(entry: UserListEntry, *, exists: bool, snapshot: bool) -> ev.UserChange:
    """What happened to the account of one ``user/list`` entry.

    ``exists`` is whether ``user/get`` still finds it; ``snapshot`` marks a bootstrap
    listing, where every existing account counts as added.
    """
    if not exists:
        return "deleted"
    if snapshot or entry.action is UserAction.ADDED:
        return "added"
    return "updated"


def profile_of(user: User) -> dict[str, Any]:
    """The JSON-ready profile carried by ``exmail.user.*`` events."""
    return {
        "alias": user.alias,
        "name": user.name,
        "gender": int(user.gender),
        "position": user.position,
        "tel": user.tel,
        "mobile": user.mobile,
        "ext_id": user.ext_id,
        "slaves": list(user.slave_list),
        "parties": list(user.parties),
        "open_type": None if user.open_type is None else int(user.open_type),
    }
