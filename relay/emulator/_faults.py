"""Injected faults: which upcoming requests misbehave, and how.

``FaultPlan`` is pure bookkeeping: a list of armed faults, each with a kind, a remaining
count and a path prefix; ``take(path)`` consumes one matching fault. The server's
middleware applies what it takes (see ``_server``). ``FaultSpec`` is the pydantic model
of a control request arming one; its refusals become a ``ControlError`` that names each
bad field. Kinds:

- ``http_500``: HTTP 500 with a short JSON body;
- ``errcode_1002``: HTTP 200 ``{"errcode":"1002","error":"temporarily_unavailable"}``;
- ``invalid_token``: answers ``1200 invalid_token`` and invalidates the current token;
- ``drop``: headers and part of the body are written, then the connection is closed;
- ``delay``: the request is handled normally after ``seconds``;
- ``malformed``: HTTP 200 with a truncated JSON body;
- ``api_error``: HTTP 200 ``{"errcode": <errcode>, "error": <error>}`` with the codes the
  request names (default ``1001 invalid_parameter``): any refusal the server could send.

On a second-API path (``/cgi-bin/gettoken`` and the operations under ``/cgi-bin/``) the
faults that answer a body answer it in that API's shape (``_api2server.api2_fault``).
"""

from __future__ import annotations

import reprlib
from dataclasses import dataclass
from typing import Any, Literal, Self, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails, PydanticCustomError

from ._errors import ControlError

__all__ = ["DEFAULT_PREFIXES", "FAULT_KINDS", "Fault", "FaultPlan", "FaultSpec", "parse_fault_spec"]

FaultKind = Literal[
    "http_500",
    "errcode_1002",
    "invalid_token",
    "drop",
    "delay",
    "malformed",
    "api_error",
]
FAULT_KINDS: tuple[FaultKind, ...] = get_args(FaultKind)
DEFAULT_PREFIXES = ("/openapi/", "/cgi-bin/token")


class FaultSpec(BaseModel):
    """The body of ``POST /_emulator/faults``. Strict: ``true`` is not a count, ``"2"`` is
    not a number. Keys it does not know are ignored."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")

    kind: FaultKind
    count: int = Field(default=1, ge=1)
    path: str | None = Field(default=None, pattern="^/")
    seconds: float = Field(default=0.0, ge=0)
    errcode: str | int = "1001"
    error: str = "invalid_parameter"

    @field_validator("path")
    @classmethod
    def _not_the_control_api(cls, path: str | None) -> str | None:
        if path is not None and path.startswith("/_emulator"):
            raise PydanticCustomError("control_api", "the control API cannot be faulted")
        return path

    @model_validator(mode="after")
    def _delay_needs_seconds(self) -> Self:
        if self.kind == "delay" and self.seconds == 0:
            raise PydanticCustomError("delay_seconds", "a delay fault needs seconds > 0")
        return self


_EXPECTED = {  # field -> what it must be, for type and range errors
    "kind": f"one of {list(FAULT_KINDS)}",
    "count": "a positive integer",
    "path": "a string starting with '/'",
    "seconds": "a non-negative number",
    "errcode": "a string or an integer",
    "error": "a string",
}
_OWN_ERRORS = {"control_api", "delay_seconds"}  # their message is already the explanation


def _problem(error: ErrorDetails) -> str:
    if error["type"] == "model_type":
        return "expected a JSON object {kind, count?, path?, seconds?, errcode?, error?}"
    field = str(error["loc"][0]) if error["loc"] else ""
    if error["type"] in _OWN_ERRORS or field not in _EXPECTED:
        return f"{field}: {error['msg']}" if field else error["msg"]
    got = "missing" if error["type"] == "missing" else f"got {reprlib.repr(error['input'])}"
    return f"{field} must be {_EXPECTED[field]} ({got})"


def parse_fault_spec(body: Any) -> FaultSpec:
    """Validate a control request body; a ``ControlError`` (400) names each bad field."""
    try:
        return FaultSpec.model_validate(body)
    except ValidationError as exc:
        problems = dict.fromkeys(_problem(e) for e in exc.errors(include_url=False))
        raise ControlError("; ".join(problems)) from None


@dataclass(slots=True)
class Fault:
    kind: str
    count: int
    path: str | None = None
    seconds: float = 0.0
    errcode: str = "1001"
    error: str = "invalid_parameter"
    errcode_text: bool = False  # armed as a JSON string: the second API answers it so

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

    def arm(self, body: Any) -> Fault:
        """Validate a control request body and arm the fault it describes."""
        spec = parse_fault_spec(body)
        fault = Fault(
            kind=spec.kind,
            count=spec.count,
            path=spec.path,
            seconds=spec.seconds,
            errcode=str(spec.errcode),
            error=spec.error,
            errcode_text="errcode" in spec.model_fields_set and isinstance(spec.errcode, str),
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
