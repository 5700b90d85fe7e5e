"""``exmail-relay journal check`` and ``journal salvage`` as an operator runs them, on real
journal files (a damaged one made by overwriting a table's page)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from relay.cli import main
from tests.journal.test_journal_corruption import damage, filled


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_check_says_ok_and_what_each_sink_owes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "j.sqlite3"
    asyncio.run(filled(path, events=40))
    code, out, _ = run(capsys, "journal", "check", "--journal", str(path))
    assert code == 0
    assert "integrity: ok" in out
    assert "sink s: 32 pending, 3 dead" in out
    assert "sink t: 40 pending, 0 dead" in out


def test_check_finds_a_damaged_page_and_names_the_salvage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "j.sqlite3"
    asyncio.run(filled(path, events=40))
    damage(path, "checkpoints")
    code, out, _ = run(capsys, "journal", "check", "--journal", str(path))
    assert code == 1
    assert "integrity: DAMAGED" in out
    assert "malformed" in out
    assert "sink s: 32 pending, 3 dead" in out, "the deliveries are still readable"
    assert f"exmail-relay journal salvage NEW_FILE --journal {path}" in out


def test_check_of_a_missing_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "journal", "check", "--journal", str(tmp_path / "nope.sqlite3"))
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("exmail-relay journal: error: journal ")
    assert "does not exist" in err


def test_salvage_then_check_the_new_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, new = tmp_path / "j.sqlite3", tmp_path / "new.sqlite3"
    asyncio.run(filled(path, events=40))
    damage(path, "sinks")
    code, out, _ = run(capsys, "journal", "salvage", str(new), "--journal", str(path))
    assert code == 0
    assert "events: 40 copied, 0 lost" in out
    assert "deliveries: 80 copied, 0 lost" in out
    assert "checkpoints: 1 copied, 0 lost" in out
    assert "sinks: 0 copied, 1 lost" in out
    assert "backlog in" in out
    code, out, _ = run(capsys, "journal", "check", "--journal", str(new))
    assert code == 0
    assert "integrity: ok" in out
    assert "sink s: 32 pending, 3 dead" in out
    # A second salvage into the same file is refused, in one line, and changes nothing.
    before = new.read_bytes()
    code, out, err = run(capsys, "journal", "salvage", str(new), "--journal", str(path))
    assert code == 1
    assert "refusing to overwrite" in err
    assert err.count("\n") == 1
    assert new.read_bytes() == before
