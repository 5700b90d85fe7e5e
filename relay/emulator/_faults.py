"""Injected faults: which upcoming requests misbehave, and how.

``FaultPlan`` is pure bookkeeping: a list of armed faults, each with a kind, a remaining
count and a path prefix; ``take(path)`` consumes one matching fault. The server's
middleware applies what it takes (see ``_server``). Kinds:

- ``http_500``: HTTP 500 with a short JSON body;
- ``errcode_1002``: HTTP 200 ``{"errcode":"1002","error":"temporarily_unavailable"}``;
- ``invalid_token``: answers ``1200 invalid_token`` and invalidates the current token;
- ``drop``: headers and part of the body are written, then the connection is closed;
- ``delay``: the request is handled normally after ``seconds``;
- ``malformed``: HTTP 200 with a truncated JSON body;
- ``api_error``: HTTP 200 ``{"errcode": <errcode>, "error": <error>}`` with the codes the
  request names (default ``1001 invalid_parameter``): any refusal the server could send.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._errors import ControlError

__all__ = ["DEFAULT_PREFIXES", "FAULT_KINDS", "Fault", "FaultPlan"]

FAULT_KINDS = (
    "http_500",
    "errcode_1002",
    "invalid_token",
    "drop",
    "delay",
    "malformed",
    "api_error",
)
DEFAULT_PREFIXES = ("/openapi/", "/cgi-bin/token")


@dataclass(slots=True)
class Fault:
    kind: str
    count: int
    path: str | None = None
    seconds: float = 0.0
    errcode: str = "1001"
    error: str = "invalid_parameter"

    def matches(self, path: str) -> bool:
        if self.path is None:
            return path.startswith(DEFAULT_PREFIXES)
        return path.startswith(self.path)


class FaultPlan:
    """Armed faults, first armed first served."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def __len__(self) -> int:
        return len(self._faults)

    def arm(self, spec: Any) -> Fault:
        """Validate a control request body and arm the fault it describes."""
        if not isinstance(spec, dict):
            raise ControlError("expected a JSON object {kind, count, path?, seconds?}")
        kind = spec.get("kind")
        if kind not in FAULT_KINDS:
            raise ControlError(f"kind must be one of {list(FAULT_KINDS)}")
        count = spec.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ControlError("count must be a positive integer")
        path = spec.get("path")
        if path is not None and (not isinstance(path, str) or not path.startswith("/")):
            raise ControlError("path must be a string starting with '/'")
        if path is not None and path.startswith("/_emulator"):
            raise ControlError("the control API cannot be faulted")
        seconds = spec.get("seconds", 0.0)
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise ControlError("seconds must be a non-negative number")
        if kind == "delay" and seconds == 0:
            raise ControlError("a delay fault needs seconds > 0")
        errcode = spec.get("errcode", "1001")
        error = spec.get("error", "invalid_parameter")
        if not isinstance(errcode, str | int) or isinstance(errcode, bool):
            raise ControlError("errcode must be a string or an integer")
        if not isinstance(error, str):
            raise ControlError("error must be a string")
        fault = Fault(
            kind=kind,
            count=count,
            path=path,
            seconds=float(seconds),
            errcode=str(errcode),
            error=error,
        )
        self._faults.append(fault)
        return fault

    def take(self, path: str) -> Fault | None:
        for fault in self._faults:
            if fault.matches(path):
                fault.count -= 1
                if fault.count <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def clear(self) -> None:
        self._faults.clear()

    def describe(self) -> list[dict[str, Any]]:
        return [
            {"kind": f.kind, "count": f.count, "path": f.path, "seconds": f.seconds}
            for f in self._faults
        ]
