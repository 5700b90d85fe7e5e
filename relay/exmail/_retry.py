"""The backoff policy for retried reads: :class:`relay.core.backoff.Backoff`.

Capped exponential backoff with full jitter, defined once in the relay's pure core and
used here for the client's retried reads (the client depends on the core, never the
other way round).
"""

from __future__ import annotations

from relay.core.backoff import Backoff

__all__ = ["Backoff"]
