"""What the emulator's HTTP faces share: the typed app keys and the JSON answer.

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

from ._api2state import Api2State
from ._faults import FaultPlan
from ._listen import ListenHub
from ._listenlog import ListenLog
from ._state import EmulatorState

__all__ = [
    "API2",
    "CONFIG",
    "COUNTERS",
    "FAULTS",
    "HUB",
    "LISTENS",
    "REPLICA_HEADER",
    "STATE",
    "ListenFormat",
    "ServerConfig",
    "dumps",
    "json_response",
    "peer_of",
    "replica_of",
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
LISTENS = web.AppKey("listens", ListenLog)
API2 = web.AppKey("api2", Api2State)  # the second API's tenants (``_api2server``)

REPLICA_HEADER = "X-Relay-Replica"
_MAX_REPLICA = 64


def peer_of(request: web.Request) -> str:
    """The client's address as ``host:port`` (``[host]:port`` for IPv6)."""
    peer = request.transport.get_extra_info("peername") if request.transport else None
    if isinstance(peer, tuple) and len(peer) >= 2:
        host, port = str(peer[0]), peer[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return request.remote or "unknown"


def replica_of(request: web.Request) -> str:
    """Who sent a request: its ``X-Relay-Replica`` header (printable, capped), else the peer."""
    name = request.headers.get(REPLICA_HEADER, "").strip()[:_MAX_REPLICA]
    if name and name.isprintable():
        return name
    return peer_of(request)


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def json_response(obj: Any, *, status: int = 200) -> web.Response:
    return web.Response(
        body=dumps(obj), status=status, content_type="application/json", charset="utf-8"
    )
