"""What the emulator's two HTTP faces share: the typed app keys and the JSON answer.

``_server`` (token, OpenApi, login, faults middleware) and ``_control`` (the
``/_emulator/`` API) both read the application's state through these keys and answer
with ``json_response``; keeping them here lets ``_server`` mount ``_control``'s routes
without ``_control`` importing ``_server`` back.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

from ._faults import FaultPlan
from ._listen import ListenHub
from ._state import EmulatorState

__all__ = [
    "CONFIG",
    "COUNTERS",
    "FAULTS",
    "HUB",
    "STATE",
    "ListenFormat",
    "ServerConfig",
    "dumps",
    "json_response",
]

ListenFormat = Literal["array", "concat", "lines"]


@dataclass(frozen=True, slots=True)
class ServerConfig:
    hold: float = 25.0
    max_batch: int = 100
    listen_format: ListenFormat = "array"


STATE = web.AppKey("state", EmulatorState)
HUB = web.AppKey("hub", ListenHub)
CONFIG = web.AppKey("config", ServerConfig)
FAULTS = web.AppKey("faults", FaultPlan)
COUNTERS: web.AppKey[Counter[str]] = web.AppKey("counters")


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def json_response(obj: Any, *, status: int = 200) -> web.Response:
    return web.Response(
        body=dumps(obj), status=status, content_type="application/json", charset="utf-8"
    )
