"""The journal's exceptions.

The tree::

    JournalError        the journal could not do what was asked: it cannot be opened,
     |                  a read or a write failed (SQLite's own error is the ``__cause__``)
     +-- JournalClosed  the journal was used after :meth:`Journal.close`
     +-- JournalCorrupt the file is damaged (SQLite: "database disk image is malformed",
     |                  "file is not a database"); the message names the file and the
     |                  recovery (``exmail-relay journal check`` / ``journal salvage``)
     +-- JournalInUse   another process holds the file's single-writer lock (a running
                        relay, a salvage); the message names its pid, host and start

Only :class:`JournalError` and its subclasses leave the package: SQLite's and the
operating system's errors are translated at the boundary with ``raise ... from exc``
(:func:`from_sqlite`). A programming error inside a write function (a ``TypeError``,
say) is handed to the caller of that write unchanged, never wrapped.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Final

__all__ = [
    "JournalClosed",
    "JournalCorrupt",
    "JournalError",
    "JournalInUse",
    "from_sqlite",
    "is_corrupt",
    "recovery",
]

# SQLite's primary result codes for a damaged file (the extended codes keep them in
# their low byte: SQLITE_CORRUPT_INDEX is 779 = 11 | 3 << 8).
_SQLITE_CORRUPT: Final = 11
_SQLITE_NOTADB: Final = 26


class JournalError(Exception):
    """The journal could not do what was asked (root of the journal's exceptions)."""

    @property
    def reason(self) -> str:
        """The shortest true account, for readiness: SQLite's own words when it spoke
        (``database or disk is full``, ``database is locked``), else the message."""
        cause = self.__cause__
        if isinstance(cause, sqlite3.Error) and str(cause) and not isinstance(self, JournalCorrupt):
            return str(cause)
        return str(self)


class JournalClosed(JournalError):
    """The journal was used after it was closed."""


class JournalCorrupt(JournalError):
    """The journal file is damaged: the relay cannot go on with it until it is salvaged."""


class JournalInUse(JournalError):
    """Another process holds the journal's lock (:mod:`._lock`): ``pid`` is its process
    id when the lock file says it."""

    def __init__(self, message: str, *, path: Path, pid: int | None) -> None:
        super().__init__(message)
        self.path = path
        self.pid = pid


def is_corrupt(exc: sqlite3.Error) -> bool:
    """SQLite says the file is damaged (or is not a database at all)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    text = str(exc)
    return "malformed" in text or "not a database" in text


def recovery(path: Path | str) -> str:
    """What the operator does about a damaged journal file (one line)."""
    return (
        f"stop the relay, run 'exmail-relay journal check --journal {path}', then"
        f" 'exmail-relay journal salvage NEW_FILE --journal {path}' and start on the new"
        " file (docs/operations.md, Journal corruption)"
    )


def from_sqlite(exc: sqlite3.Error, *, path: Path | str, doing: str) -> JournalError:
    """SQLite's ``exc`` as the journal's error, naming the file (raise it ``from exc``).

    ``doing`` is a verb: ``open``, ``read``. A damaged file is :class:`JournalCorrupt`
    and says what to do about it."""
    if is_corrupt(exc):
        return JournalCorrupt(f"journal {path} is damaged ({exc}): {recovery(path)}")
    return JournalError(f"cannot {doing} journal {path}: {exc}")
