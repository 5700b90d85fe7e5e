"""Relay events: what the source builds from Exmail pushes and every sink delivers.

Pure code, no I/O. An :class:`Event` becomes a CloudEvents 1.0 document in structured
mode (:meth:`Event.encode`); the AMQP routing key is ``<tenant>.<type minus "exmail.">``.

Ids are derived from the fact itself, never from a random number or from when or
through which listing it was seen, so the same fact emitted twice (a redelivered
``listen`` answer, a takeover that resumes from an older checkpoint and lists the same
changes again) gets the same id and the journal stores it once (docs/events.md, "Ids"):

- ``exmail.mail.new``: tenant, account and MailId;
- ``exmail.mail.unread``: tenant, account, the count, and the MailId of the newest
  reminder for that account seen before it (the count alone recurs: 3, read one, 2, a
  new mail, 3, read one, 2 again are two facts "2", told apart by the mail between);
  from the second API's callback (:func:`callback_unread`), tenant, account, the count
  and the callback's ``Time`` instead of that MailId (the message carries its time);
- ``exmail.directory.changed``: tenant, old and new Ver (it reports that listing);
- ``exmail.user.*``: tenant, account, change and the profile the change left (none for
  a deletion), never the Ver of the listing that reported it.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

__all__ = [
    "ALL_TYPES",
    "DIRECTORY_CHANGED",
    "MAIL_NEW",
    "MAIL_UNREAD",
    "USER_ADDED",
    "USER_DELETED",
    "USER_UPDATED",
    "Event",
    "callback_unread",
    "directory_changed",
    "encode_json",
    "mail_new",
    "mail_unread",
    "type_matches",
    "unread_id",
    "user_change_id",
    "user_changed",
]

MAIL_NEW: Final = "exmail.mail.new"
MAIL_UNREAD: Final = "exmail.mail.unread"
DIRECTORY_CHANGED: Final = "exmail.directory.changed"
USER_ADDED: Final = "exmail.user.added"
USER_UPDATED: Final = "exmail.user.updated"
USER_DELETED: Final = "exmail.user.deleted"
ALL_TYPES: Final = (
    MAIL_NEW,
    MAIL_UNREAD,
    DIRECTORY_CHANGED,
    USER_ADDED,
    USER_UPDATED,
    USER_DELETED,
)

UserChange = Literal["added", "updated", "deleted"]
_USER_TYPES: Final[dict[str, str]] = {
    "added": USER_ADDED,
    "updated": USER_UPDATED,
    "deleted": USER_DELETED,
}

SPEC_VERSION: Final = "1.0"
CONTENT_TYPE: Final = "application/cloudevents+json"


@dataclass(frozen=True, slots=True)
class Event:
    """One relay event. ``data`` holds JSON-ready values only."""

    id: str
    tenant: str
    type: str
    subject: str
    time: datetime
    data: Mapping[str, Any]

    @property
    def source(self) -> str:
        return f"exmail-relay/{self.tenant}"

    @property
    def routing_key(self) -> str:
        return f"{self.tenant}.{self.type.removeprefix('exmail.')}"

    def to_cloudevent(self) -> dict[str, Any]:
        return {
            "specversion": SPEC_VERSION,
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "subject": self.subject,
            "time": format_time(self.time),
            "datacontenttype": "application/json",
            "data": dict(self.data),
        }

    def encode(self) -> bytes:
        """The CloudEvent as compact UTF-8 JSON (:func:`encode_json`): what the journal
        stores, and the body every sink sends in structured mode."""
        return encode_json(self.to_cloudevent())

    def encode_traced(self, traceparent: str, tracestate: str | None) -> bytes:
        """:meth:`encode` with the CloudEvents distributed-tracing extension: the W3C
        ``traceparent`` (and ``tracestate``, if any) of the trace that made the event."""
        document = self.to_cloudevent()
        document["traceparent"] = traceparent
        if tracestate:
            document["tracestate"] = tracestate
        return encode_json(document)


def encode_json(value: Any) -> bytes:
    """Compact UTF-8 JSON, the way every body the relay sends is written.

    A lone surrogate (JSON lets a server send ``"\\ud800"``) cannot be UTF-8; it is
    written back as its JSON escape, so the bytes stay valid UTF-8 and valid JSON.
    """
    text = _COMPACT.encode(value)
    return text.encode("utf-8", "backslashreplace")


# What ``json.dumps(value, ensure_ascii=False, separators=(",", ":"))`` builds on every
# call, built once: the same bytes, without an encoder object per event.
_COMPACT: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


@functools.lru_cache(maxsize=256)
def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with millisecond precision and a ``Z``.

    Kept for the last few moments: the events of one ``listen`` answer share theirs,
    and ``strftime`` was half of encoding an event (issue 20)."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def derive_id(*parts: str) -> str:
    """A stable 32-hex-digit id from the parts that identify a happening."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).digest()
    return digest[:16].hex()


def unread_id(tenant: str, user: str, unread: int, after_mail: str | None) -> str:
    """The id of an unread count: equal for the same count after the same mail."""
    return derive_id(MAIL_UNREAD, tenant, user.lower(), str(unread), after_mail or "")


def user_change_id(
    event_type: str, tenant: str, alias: str, profile: Mapping[str, Any] | None
) -> str:
    """The id of a directory change: the account and the state the change left it in,
    so listing it again from an older Ver (a takeover) gives the same id."""
    state = "" if profile is None else json.dumps(profile, sort_keys=True, ensure_ascii=True)
    return derive_id(event_type, tenant, alias.lower(), state)


def type_matches(event_type: str, pattern: str) -> bool:
    """Filter match: ``*`` matches all, ``exmail.mail.*`` a prefix, otherwise equality."""
    if pattern in ("*", "#"):
        return True
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    return event_type == pattern


def mail_new(
    *,
    tenant: str,
    user: str,
    mail_id: str,
    sender: str,
    receiver: str,
    subject: str,
    summary: str,
    unread: int | None,
    now: datetime,
    truncated: Sequence[str] = (),
) -> Event:
    """A new mail. ``truncated`` names the fields cut to the client's ``max_field_bytes``;
    ``data.truncated`` is present only when it is not empty."""
    data: dict[str, Any] = {
        "user": user,
        "mail_id": mail_id,
        "sender": sender,
        "receiver": receiver,
        "subject": subject,
        "summary": summary,
        "unread": unread,
    }
    if truncated:
        data["truncated"] = list(truncated)
    return Event(
        id=derive_id(MAIL_NEW, tenant, user.lower(), mail_id),
        tenant=tenant,
        type=MAIL_NEW,
        subject=user,
        time=now,
        data=data,
    )


def mail_unread(
    *, tenant: str, user: str, unread: int, after_mail: str | None = None, now: datetime
) -> Event:
    """An unread count. ``after_mail``: the MailId of the newest new-mail reminder for
    ``user`` seen before this update (None: none seen), which tells a count that recurs
    after a new mail from the same count reported again."""
    return Event(
        id=unread_id(tenant, user, unread, after_mail),
        tenant=tenant,
        type=MAIL_UNREAD,
        subject=user,
        time=now,
        data={"user": user, "unread": unread},
    )


def callback_unread(*, tenant: str, user: str, unread: int, at: int, now: datetime) -> Event:
    """An unread count told by the second API's callback (``UnRead``): its id is derived
    from tenant, account, count and the message's ``Time`` (``at``, unix seconds), so
    the same message delivered twice has one id (the ``@`` keeps it apart from a MailId)."""
    return Event(
        id=derive_id(MAIL_UNREAD, tenant, user.lower(), str(unread), f"@{at}"),
        tenant=tenant,
        type=MAIL_UNREAD,
        subject=user,
        time=now,
        data={"user": user, "unread": unread},
    )


def directory_changed(
    *, tenant: str, old_ver: int, new_ver: int, count: int, now: datetime
) -> Event:
    return Event(
        id=derive_id(DIRECTORY_CHANGED, tenant, str(old_ver), str(new_ver)),
        tenant=tenant,
        type=DIRECTORY_CHANGED,
        subject=tenant,
        time=now,
        data={"old_ver": old_ver, "new_ver": new_ver, "count": count},
    )


def user_changed(
    *,
    tenant: str,
    alias: str,
    change: UserChange,
    ver: int,
    profile: Mapping[str, Any] | None,
    now: datetime,
) -> Event:
    """A directory entry. ``profile`` is ``None`` for a deleted account."""
    event_type = _USER_TYPES[change]
    return Event(
        id=user_change_id(event_type, tenant, alias, profile),
        tenant=tenant,
        type=event_type,
        subject=alias,
        time=now,
        data={"alias": alias, "change": change, "ver": ver, "profile": profile},
    )
