"""The second API's last directory listing per tenant: its read and its write.

Where it sits: under the :class:`~relay.journal.Journal` facade (``listing`` reads it,
``append(..., listing=...)`` changes it inside the transaction that stores the events
the change produced), for :class:`relay.runtime.directory2.DirectoryPoller`. A counter
that mirrors stored state changes in the same transaction: ``directory_listings.members``
is recounted from the rows, never added up.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from relay.core.listing import StoredMember

__all__ = ["ListingWrite", "StoredListing", "read", "write"]

#: Runs inside :meth:`Journal.append`'s transaction with the commit's time.
ListingWrite = Callable[[sqlite3.Connection, float], None]

_CHUNK = 500


@dataclass(frozen=True, slots=True)
class StoredListing:
    members: dict[str, StoredMember]  # key (address in lower case) -> row
    updated: float  # when it was last changed


def read(tenant: str) -> Callable[[sqlite3.Connection], StoredListing | None]:
    def run(db: sqlite3.Connection) -> StoredListing | None:
        head = db.execute(
            "SELECT updated FROM directory_listings WHERE tenant = ?", (tenant,)
        ).fetchone()
        if head is None:
            return None
        rows = db.execute(
            "SELECT member, alias, digest FROM directory_members WHERE tenant = ?", (tenant,)
        )
        members = {str(m): StoredMember(str(a), str(d)) for m, a, d in rows}
        return StoredListing(members, float(head[0]))

    return run


def write(
    tenant: str, upserts: Mapping[str, StoredMember], deletes: Sequence[str], *, replace: bool
) -> ListingWrite:
    """Store the rows that changed (``replace``: a baseline, every other row goes)."""
    rows = [(tenant, key, m.alias, m.digest) for key, m in upserts.items()]
    gone = [(tenant, key) for key in deletes]

    def run(db: sqlite3.Connection, now: float) -> None:
        if replace:
            db.execute("DELETE FROM directory_members WHERE tenant = ?", (tenant,))
        for start in range(0, len(gone), _CHUNK):
            db.executemany(
                "DELETE FROM directory_members WHERE tenant = ? AND member = ?",
                gone[start : start + _CHUNK],
            )
        db.executemany(
            "INSERT INTO directory_members (tenant, member, alias, digest) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (tenant, member) DO UPDATE SET alias = excluded.alias,"
            " digest = excluded.digest",
            rows,
        )
        db.execute(
            "INSERT INTO directory_listings (tenant, members, updated)"
            " VALUES (?, (SELECT COUNT(*) FROM directory_members WHERE tenant = ?), ?)"
            " ON CONFLICT (tenant) DO UPDATE SET members = excluded.members,"
            " updated = excluded.updated",
            (tenant, tenant, now),
        )

    return run
