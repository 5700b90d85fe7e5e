"""The single-writer guard: one relay per journal file, refused rather than trusted.

Where it sits: beside the :class:`~relay.journal.Journal` facade, not under it.
``exmail-relay run`` holds a :class:`JournalLock` for its whole life, taken before the
journal is opened (opening it migrates the schema and retires orphans: writes), and
:func:`~._salvage.salvage_file` holds one while it copies. The commands meant to work
beside a running relay (``deadletters``, ``endpoint``, ``journal check``) never take it:
WAL mode and the busy timeout already make their short transactions safe, and the
relay notices their commits (``PRAGMA data_version``).

Why it is shaped this way:

- **Two relays on one journal is a fault, not a race to referee.** Both would hold the
  same tenants' ``listen`` (one valid token per account: they knock each other out),
  claim and deliver the same rows, and keep in-memory counters that mirror a file the
  other one changes. Like PostgreSQL's ``postmaster.pid`` and Prometheus's TSDB lock,
  the second one says who holds the file and exits.
- **An advisory ``flock`` on a sibling file** (``<journal>.lock``), never on the
  journal: SQLite takes its own POSIX locks on that file, and on NFS the kernel
  emulates ``flock`` with the same kind of lock. The lock belongs to the open file
  description, so the kernel drops it when the process dies, ``kill -9`` included: a
  stale file never blocks a restart. The file is never deleted either (an unlink would
  let two processes each lock a different inode of the same name).
- **The file says who holds it**, for the refusal: pid, host, start time and command,
  one JSON line, nothing from the configuration (no secret can land there).
- **A filesystem without ``flock``** (an NFS mount without a lock manager answers
  ``ENOLCK``) does not stop the relay: the guard is off, said once as a warning with the
  reason, and the relay runs as it always did. An NFS mount with ``nolock`` grants
  every lock locally, so two *hosts* are not kept apart there; nothing here can tell.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from relay.journal._exceptions import JournalError, JournalInUse

__all__ = ["Holder", "JournalLock", "lock_path"]

log = logging.getLogger("relay.journal")

_MAX_READ: Final = 4096  # a holder line is about 120 bytes; more is not ours


def lock_path(journal: Path) -> Path:
    """The lock file of ``journal``: beside the file the path resolves to, so two
    spellings of one journal (a relative path, a symlinked directory) share one lock."""
    real = journal.resolve()
    return real.with_name(real.name + ".lock")


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a lock, as its file says; ``None`` for what it does not say."""

    pid: int | None = None
    host: str | None = None
    since: str | None = None
    command: str | None = None

    def describe(self) -> str:
        """``pid 1234 on host h, since 2025-01-02T03:04:05Z`` (``journal salvage:``
        first when the holder is not a relay)."""
        if self.pid is None:
            return "pid unknown: its lock file names no holder"
        said = f"pid {self.pid}"
        if self.host:
            said += f" on host {self.host}"
        if self.since:
            said += f", since {self.since}"
        if self.command and self.command != "run":
            said = f"{self.command}: {said}"
        return said


def _holder_of(text: bytes) -> Holder:
    try:
        doc = json.loads(text)
    except ValueError:  # empty (the holder is between its lock and its write), or foreign
        return Holder()
    if not isinstance(doc, dict):
        return Holder()
    pid = doc.get("pid")

    def text_of(key: str) -> str | None:
        value = doc.get(key)
        return value if isinstance(value, str) and value.isprintable() else None

    return Holder(
        pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
        host=text_of("host"),
        since=text_of("since"),
        command=text_of("command"),
    )


class JournalLock:
    """An exclusive, non-blocking ``flock`` on ``<journal>.lock``, held inside ``with``.

    Entering raises :class:`JournalInUse` when another process holds it, and
    :class:`JournalError` when the lock file cannot be created (a missing or read-only
    directory: the journal could not be opened either). A filesystem that refuses
    ``flock`` itself is logged once and entered anyway, unguarded (``held`` is False).

    ``command`` is recorded for the refusal message of the next comer (``run``,
    ``journal salvage``); ``advice`` ends the refusal this lock raises. ``flock`` is the
    seam to the kernel call (tests give a filesystem that refuses it)."""

    def __init__(
        self,
        journal: Path,
        *,
        command: str,
        advice: str,
        flock: Callable[[int, int], None] = fcntl.flock,
    ) -> None:
        self.journal = journal
        self.path = lock_path(journal)
        self.held = False
        self._command = command
        self._advice = advice
        self._flock = flock
        self._fd: int | None = None

    def __enter__(self) -> Self:
        fd, writable = self._open()
        try:
            self._flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder_of(os.pread(fd, _MAX_READ, 0))
            os.close(fd)
            raise JournalInUse(
                f"journal {self.journal} is in use by another exmail-relay"
                f" ({holder.describe()}); {self._advice}",
                path=self.journal,
                pid=holder.pid,
            ) from None
        except OSError as exc:
            os.close(fd)
            log.warning(
                "journal single-writer guard is off: the filesystem refuses flock, so"
                " nothing stops a second relay on this journal",
                extra={"lock": str(self.path), "reason": exc.strerror or str(exc)},
            )
            return self
        self._fd = fd
        self.held = True
        if writable:
            self._record(fd)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd = None
        self.held = False

    def _open(self) -> tuple[int, bool]:
        """The lock file, created if need be; read-only when another user's file is
        there (``flock`` needs no write access: only the holder line is lost)."""
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644), True
        except PermissionError as exc:
            failure: OSError = exc
            with contextlib.suppress(OSError):
                return os.open(self.path, os.O_RDONLY), False
        except OSError as exc:
            failure = exc
        raise JournalError(
            f"cannot open journal {self.journal}: cannot create its lock file {self.path}:"
            f" {failure.strerror or failure}"
        ) from failure

    def _record(self, fd: int) -> None:
        line = json.dumps(
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "since": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "command": self._command,
            }
        )
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (line + "\n").encode(), 0)
        except OSError as exc:  # a full disk: the lock holds, the next comer reads no pid
            log.info(
                "journal lock held, its holder line not written",
                extra={"lock": str(self.path), "reason": exc.strerror or str(exc)},
            )
