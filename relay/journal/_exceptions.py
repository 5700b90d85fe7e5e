"""The journal's exceptions.

The tree::

    JournalError        the journal could not do what was asked: it cannot be opened,
     |                  or a write failed (SQLite's own error is the ``__cause__``)
     +-- JournalClosed  the journal was used after :meth:`Journal.close`

Only :class:`JournalError` and its subclasses leave the package: SQLite's and the
operating system's errors are translated at the boundary with ``raise ... from exc``.
A programming error inside a write function (a ``TypeError``, say) is handed to the
caller of that write unchanged, never wrapped.
"""

from __future__ import annotations

__all__ = ["JournalClosed", "JournalError"]


class JournalError(Exception):
    """The journal could not do what was asked (root of the journal's exceptions)."""


class JournalClosed(JournalError):
    """The journal was used after it was closed."""
