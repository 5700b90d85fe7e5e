"""The console sink: one CloudEvent JSON line per event on stdout (used by the demo)."""

from __future__ import annotations

import sys
from typing import TextIO

from relay.core.delivery import Delivered, Delivery, Outcome

__all__ = ["ConsoleSink"]


class ConsoleSink:
    """Writes each event's JSON body as one line; never fails while stdout works."""

    def __init__(self, *, stream: TextIO | None = None, name: str = "console") -> None:
        self._stream = stream
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @property
    def connected(self) -> bool:
        return True

    async def send(self, delivery: Delivery) -> Outcome:
        stream = self._stream or sys.stdout
        stream.write(delivery.body.decode("utf-8") + "\n")
        stream.flush()
        return Delivered()
