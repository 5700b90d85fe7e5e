"""The single-writer guard (:class:`relay.journal.JournalLock`) on real files: held and
refused, released at exit, the holder's line, a filesystem that refuses ``flock``, a
directory where the lock file cannot be made. ``flock`` locks belong to the open file
description, so two locks in this one process exclude each other as two processes do
(tests/ops/test_ops_journal_lock.py runs the real processes)."""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from relay.journal import JournalError, JournalInUse, JournalLock, lock_path


def guard(path: Path, *, flock: Callable[[int, int], None] = fcntl.flock) -> JournalLock:
    return JournalLock(path, command="run", advice="stop it first", flock=flock)


def test_a_second_lock_is_refused_naming_the_holder_until_the_first_is_released(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "j.sqlite3"
    with guard(journal) as first:
        assert first.held
        with pytest.raises(JournalInUse) as refused, guard(journal):
            pass
        holder = json.loads(lock_path(journal).read_text())
    assert refused.value.pid == os.getpid()
    assert str(refused.value) == (
        f"journal {journal} is in use by another exmail-relay (pid {os.getpid()} on host"
        f" {socket.gethostname()}, since {holder['since']}); stop it first"
    )
    with guard(journal) as again:  # released on exit
        assert again.held
    assert not again.held


def test_the_lock_file_is_beside_the_file_the_path_resolves_to(tmp_path: Path) -> None:
    real = tmp_path / "data"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    with (
        guard(real / "j.sqlite3"),
        pytest.raises(JournalInUse),
        guard(tmp_path / "link" / "j.sqlite3"),
    ):
        pass
    assert lock_path(tmp_path / "link" / "j.sqlite3") == real / "j.sqlite3.lock"


def test_a_holder_that_wrote_no_line_is_still_refused(tmp_path: Path) -> None:
    journal = tmp_path / "j.sqlite3"
    with guard(journal):
        lock_path(journal).write_text("")  # as between the holder's lock and its write
        unknown = r"\(pid unknown: its lock file names no holder\)"
        with pytest.raises(JournalInUse, match=unknown), guard(journal):
            pass


def test_a_salvage_holding_the_lock_is_named_as_such(tmp_path: Path) -> None:
    journal = tmp_path / "j.sqlite3"
    with (
        JournalLock(journal, command="journal salvage", advice="wait"),
        pytest.raises(JournalInUse, match=r"\(journal salvage: pid \d+ on host "),
        guard(journal),
    ):
        pass


def test_a_filesystem_that_refuses_flock_warns_once_and_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))  # NFS without a lock manager

    journal = tmp_path / "j.sqlite3"
    with (
        caplog.at_level(logging.INFO, logger="relay.journal"),
        guard(journal, flock=no_locks) as unguarded,
    ):
        assert not unguarded.held
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        "journal single-writer guard is off: the filesystem refuses flock, so nothing"
        " stops a second relay on this journal"
    ]
    assert warnings[0].reason == os.strerror(errno.ENOLCK)  # type: ignore[attr-defined]
    assert warnings[0].lock == str(lock_path(journal))  # type: ignore[attr-defined]


def test_a_directory_where_no_lock_file_can_be_made_is_one_clear_error(tmp_path: Path) -> None:
    journal = tmp_path / "missing" / "j.sqlite3"
    with pytest.raises(JournalError) as failed, guard(journal):
        pass
    assert str(failed.value) == (
        f"cannot open journal {journal}: cannot create its lock file"
        f" {tmp_path / 'missing' / 'j.sqlite3.lock'}: No such file or directory"
    )
