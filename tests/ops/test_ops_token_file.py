"""A token file followed live (:class:`relay.ops.token_file.LiveTokens`), on a clock the
test moves: checked at most every interval, read only when it changed (a Secret swapped
the kubelet's way included), a broken file leaving the last good set in force with one
warning per problem, and every token it reads known to the log redaction. Real files,
the real logging setup (JSON lines on a stream), no mocks."""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path
from typing import Any

from relay.core.bearer import TokenSet, parse_token_file
from relay.ops.logs import configure
from relay.ops.token_file import LiveTokens
from tests.ops.test_ops_logs import captured
from tests.ops.test_ops_token_rotation import write

__all__ = ["captured"]

OLD = "old-token-0123456789abcdef"
NEW = "new-token-fedcba9876543210"
KEY = "http.admin_token_file"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def follow(path: Path, clock: Clock, parsed: list[str] | None = None) -> LiveTokens:
    def parse(text: str) -> TokenSet:
        if parsed is not None:
            parsed.append(text)
        return parse_token_file(text)

    start = parse_token_file(path.read_text())
    return LiveTokens(start, path=path, key=KEY, parse=parse, every=2.0, clock=clock)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_changed_file_is_taken_a_broken_one_is_not_and_warned_once(
    tmp_path: Path, captured: io.StringIO
) -> None:
    configure(format="json", level="info", secrets=[OLD], stream=captured)
    path = tmp_path / "tokens"
    write(path, f"{OLD}\n")
    clock, parsed = Clock(), []
    live = follow(path, clock, parsed)
    write(path, f"ci {NEW}\n{OLD}\n")
    assert live.current().values() == (OLD,), "not checked before the interval"
    clock.now = 2.0
    assert live.current().values() == (NEW, OLD)
    assert live.current().first.name == "ci" and live.warning is None
    reads = len(parsed)
    clock.now = 4.0
    live.current()
    assert len(parsed) == reads, "an unchanged file is not read again"
    logging.getLogger("relay.test").warning("quoting %s", NEW)  # the filter learned it
    # Broken three ways, each checked several times: the set stays, one warning each.
    broken = [
        lambda: write(path, "# every token removed by mistake\n"),
        path.unlink,
        lambda: path.write_bytes(b"\xff" + NEW.encode() + b"\n"),
    ]
    for breaking in broken:
        breaking()
        for _ in range(3):
            clock.now += 2.0
            assert live.current().values() == (NEW, OLD)
        assert live.warning is not None and live.warning.startswith(f"{KEY}: {path}: ")
        assert live.warning.endswith("; still accepting the 2 tokens (ci, 1 unnamed) read before")
    write(path, f"{NEW}\n")
    clock.now += 2.0
    assert live.current().values() == (NEW,) and live.warning is None
    logged = [line for line in lines(captured) if line["logger"] == "relay.ops.tokens"]
    assert [(line["level"], line.get("why")) for line in logged] == [
        ("info", None),
        ("warning", "holds no token (only blank lines and '#' comments)"),
        ("warning", "cannot read it (No such file or directory)"),
        ("warning", "it is not UTF-8 text"),
        ("info", None),
    ]
    assert [line.get("tokens") for line in logged if line["level"] == "info"] == [
        "2 tokens (ci, 1 unnamed)",
        "1 token (1 unnamed)",
    ]
    text = captured.getvalue()
    assert "quoting ***" in text
    assert NEW not in text and OLD not in text and NEW not in repr(live)


def test_a_secret_swapped_the_kubelets_way_is_seen(tmp_path: Path) -> None:
    # The kubelet writes a new directory and turns the ..data link to it: same name,
    # here the same size and mtime too; only the file behind the link is new.
    first, second = tmp_path / "..2026_01", tmp_path / "..2026_02"
    for folder, token in ((first, OLD), (second, NEW)):
        folder.mkdir()
        (folder / "admin-token").write_text(f"{token}\n")
    stamp = os.stat(first / "admin-token").st_mtime_ns
    os.utime(second / "admin-token", ns=(stamp, stamp))
    (tmp_path / "..data").symlink_to(first.name)
    path = tmp_path / "admin-token"
    path.symlink_to("..data/admin-token")
    clock = Clock()
    live = follow(path, clock)
    clock.now = 2.0
    assert live.current().values() == (OLD,)
    (tmp_path / "..data_tmp").symlink_to(second.name)
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
    clock.now = 4.0
    assert live.current().values() == (NEW,)
