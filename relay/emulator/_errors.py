"""Errors of the emulator.

``EmulatorError`` is the root. Below it:

- ``ApiError``: a protocol-level refusal. The HTTP layer renders it as the documented
  error shape, HTTP 200 and ``{"errcode": "...", "error": "...", "detail"?: "..."}``.
  The state raises it; the state never knows about HTTP.
- ``EmulatorSeedError``: a seed (file or dict) that cannot be used; the message names
  the problem and where it is (``companies[0].users[3].alias: ...``).
- ``ControlError``: a bad request to the ``/_emulator/`` control API (HTTP 400/404).
- ``Api2Error``: a refusal of the second API (``/cgi-bin/...``), rendered as HTTP 200
  ``{"errcode": <int>, "errmsg": "..."}``.

The errcodes ``1001``, ``1101``, ``1401``, ``1500`` are the emulator's choice: the protocol
documents give no codes for these cases (see ``docs/emulator.md``).
"""

from __future__ import annotations

__all__ = [
    "Api2Error",
    "ApiError",
    "ControlError",
    "EmulatorError",
    "EmulatorSeedError",
    "already_exists",
    "group_not_found",
    "invalid_client",
    "invalid_parameter",
    "invalid_token",
    "party_not_found",
    "temporarily_unavailable",
    "user_not_found",
]


class EmulatorError(Exception):
    """Root of every error the emulator raises on purpose."""


class ApiError(EmulatorError):
    """The server refuses an API call with ``errcode``/``error`` (and an optional detail)."""

    def __init__(self, errcode: str, error: str, detail: str | None = None) -> None:
        super().__init__(f"{errcode} {error}" + (f": {detail}" if detail else ""))
        self.errcode = errcode
        self.error = error
        self.detail = detail

    def body(self) -> dict[str, str]:
        out = {"errcode": self.errcode, "error": self.error}
        if self.detail:
            out["detail"] = self.detail
        return out


class EmulatorSeedError(EmulatorError, ValueError):
    """A seed file or seed mapping is unusable; the message says what and where."""


class ControlError(EmulatorError):
    """A control-API request is malformed (400) or names something unknown (404)."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def invalid_parameter(detail: str) -> ApiError:
    return ApiError("1001", "invalid_parameter", detail)


def temporarily_unavailable() -> ApiError:
    return ApiError("1002", "temporarily_unavailable")


def invalid_client() -> ApiError:
    return ApiError("1101", "invalid_client")


def invalid_token() -> ApiError:
    return ApiError("1200", "invalid_token")


def party_not_found(path: str) -> ApiError:
    return ApiError("1310", "party_not_found", f"no department {path!r}")


def user_not_found(alias: str) -> ApiError:
    return ApiError("1400", "user_not_found", f"no account {alias!r}")


def group_not_found(alias: str) -> ApiError:
    return ApiError("1401", "group_not_found", f"no mail group {alias!r}")


def already_exists(detail: str) -> ApiError:
    return ApiError("1500", "already_exists", detail)


class Api2Error(EmulatorError):
    """A refusal of the second API: HTTP 200 ``{"errcode": <int>, "errmsg": "..."}``.

    Codes seen for Exmail: 40001, 40014, 40031, 40070, 601002; the others are WeCom's
    (the notes §3 mark them *inferred*), listed in ``docs/emulator.md``."""

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(f"{errcode} {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg

    def body(self) -> dict[str, int | str]:
        return {"errcode": self.errcode, "errmsg": self.errmsg}
