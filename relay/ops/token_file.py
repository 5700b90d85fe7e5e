"""A token set that follows its file: ``[http] auth_token_file`` and ``admin_token_file``
re-read when they change, so a rotated Secret takes effect without a restart.

Where it sits: between the settings (the set read and validated at start) and its users,
:mod:`relay.ops.auth`, :mod:`relay.ops.admin` and :mod:`relay.ops.admin_peers`, which ask
:meth:`LiveTokens.current` on every use. At most every ``every`` seconds that costs a
``stat()``, and a read only when the file's (device, inode, size, mtime) changed.

Why on use and not a task: nothing runs while nobody asks, so there is no task to own,
and a check that fails fails in the caller's request, not unseen. A Kubernetes Secret
mounted as a directory (not ``subPath``) is swapped atomically by the kubelet (a new
file behind the ``..data`` link), so the change shows here within ``every`` seconds of
the kubelet's own sync (about a minute). A file changed in place is read again if it
changed while being read; write it to a temporary file and rename it over the old one.

A file that cannot be read, or no longer holds a valid set (no token, a short one, a
bad line), leaves the last good set in force: one warning is logged (the key, the path
and why; never a line of the file), :attr:`LiveTokens.warning` says it on
``/status.json`` (``config_warnings``), and the next good version is taken as usual.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from relay.core.bearer import TokenSet
from relay.ops.logs import redact_also

__all__ = ["LiveTokens"]

log = logging.getLogger("relay.ops.tokens")

Signature = tuple[int, int, int, int]


def _signature(path: Path) -> Signature:
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class LiveTokens:
    """The tokens of ``key`` (``admin_token_file``) held in ``path``, starting from
    ``tokens`` (the set the settings validated), re-read with ``parse`` when it changes."""

    def __init__(
        self,
        tokens: TokenSet,
        *,
        path: Path,
        key: str,
        parse: Callable[[str], TokenSet],
        every: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tokens = tokens
        self._path = path
        self._key = key
        self._parse = parse
        self._every = every
        self._clock = clock
        self._seen: Signature | None = None  # unknown: the first check reads the file
        self._due = clock() + every
        self.warning: str | None = None
        """Why the file's current content is not in force, while it is not."""

    def __repr__(self) -> str:
        return f"LiveTokens({self._key}={str(self._path)!r}, {self._tokens.describe()})"

    def current(self) -> TokenSet:
        """The tokens in force, after checking the file if the last check is old enough."""
        now = self._clock()
        if now >= self._due:
            self._due = now + self._every
            self._check()
        return self._tokens

    def _check(self) -> None:
        try:
            seen = _signature(self._path)
            if seen == self._seen:
                return
            text = self._path.read_text(encoding="utf-8")
            if _signature(self._path) != seen:
                return  # written while read: the next check reads the finished file
        except OSError as exc:
            self._seen = None
            self._keep(f"cannot read it ({exc.strerror or type(exc).__name__})")
            return
        except UnicodeDecodeError:  # its message would quote a byte of the file
            self._seen = seen
            self._keep("it is not UTF-8 text")
            return
        self._seen = seen
        try:
            tokens = self._parse(text)
        except ValueError as exc:  # TokenFileError: names a line, never its content
            self._keep(str(exc))
            return
        self._take(tokens)

    def _keep(self, why: str) -> None:
        warning = (
            f"{self._key}: {self._path}: {why}; still accepting the "
            f"{self._tokens.describe()} read before"
        )
        if warning != self.warning:
            log.warning(
                "token file not taken, the last good tokens stay in force",
                extra={"key": self._key, "path": str(self._path), "why": why},
            )
        self.warning = warning

    def _take(self, tokens: TokenSet) -> None:
        changed = [(t.name, t.value) for t in tokens.tokens] != [
            (t.name, t.value) for t in self._tokens.tokens
        ]
        if changed:
            redact_also(tokens.values())
            log.info(
                "token file read again: new tokens in force",
                extra={"key": self._key, "path": str(self._path), "tokens": tokens.describe()},
            )
        elif self.warning is not None:
            log.info("token file readable again", extra={"key": self._key, "path": str(self._path)})
        self._tokens = tokens
        self.warning = None
