"""The fault spec (the body of ``POST /_emulator/faults``): what it accepts, and that each
bad field is refused with a 400 that names it. Pure, plus one round over HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from relay.emulator import ControlError
from relay.emulator._faults import FAULT_KINDS, FaultPlan, FaultSpec, parse_fault_spec


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"kind": "boom"}, "kind must be one of ['http_500', "),
        ({}, "kind must be one of ['http_500', "),
        ({"kind": None}, "kind must be one of"),
        ({"kind": "http_500", "count": 0}, "count must be a positive integer (got 0)"),
        ({"kind": "http_500", "count": True}, "count must be a positive integer (got True)"),
        ({"kind": "http_500", "count": 1.0}, "count must be a positive integer (got 1.0)"),
        ({"kind": "http_500", "count": "2"}, "count must be a positive integer (got '2')"),
        ({"kind": "http_500", "path": "openapi"}, "path must be a string starting with '/'"),
        ({"kind": "http_500", "path": 7}, "path must be a string starting with '/' (got 7)"),
        ({"kind": "http_500", "path": "/_emulator/state"}, "path: the control API cannot be"),
        ({"kind": "delay", "seconds": -1}, "seconds must be a non-negative number (got -1)"),
        ({"kind": "delay", "seconds": "1"}, "seconds must be a non-negative number (got '1')"),
        ({"kind": "delay", "seconds": False}, "seconds must be a non-negative number"),
        ({"kind": "delay", "seconds": float("nan")}, "seconds must be a non-negative number"),
        ({"kind": "delay"}, "a delay fault needs seconds > 0"),
        ({"kind": "delay", "count": 1, "seconds": 0}, "a delay fault needs seconds > 0"),
        ({"kind": "api_error", "errcode": None}, "errcode must be a string or an integer"),
        ({"kind": "api_error", "errcode": True}, "errcode must be a string or an integer"),
        ({"kind": "api_error", "error": 1200}, "error must be a string (got 1200)"),
        ([1, 2], "expected a JSON object"),
        (None, "expected a JSON object"),
    ],
)
def test_a_bad_field_is_refused_by_name(body: Any, message: str) -> None:
    plan = FaultPlan()
    with pytest.raises(ControlError) as refused:
        plan.arm(body)
    assert refused.value.status == 400
    assert message in str(refused.value)
    assert len(plan) == 0


def test_every_bad_field_is_named_once() -> None:
    body = {"kind": "http_500", "count": -3, "path": "x", "errcode": [], "error": None}
    with pytest.raises(ControlError) as refused:
        parse_fault_spec(body)
    problems = str(refused.value).split("; ")
    assert [p.split(" ", 1)[0] for p in problems] == ["count", "path", "errcode", "error"]


def test_defaults_and_conversions() -> None:
    spec = parse_fault_spec({"kind": "http_500"})
    assert spec == FaultSpec(kind="http_500", count=1, path=None, seconds=0.0)
    assert (spec.errcode, spec.error) == ("1001", "invalid_parameter")
    fault = FaultPlan().arm({"kind": "delay", "seconds": 2, "path": "/openapi/listen"})
    assert (fault.seconds, type(fault.seconds), fault.path) == (2.0, float, "/openapi/listen")
    fault = FaultPlan().arm({"kind": "api_error", "errcode": 1300, "error": "x", "count": 3})
    assert (fault.errcode, fault.error, fault.count) == ("1300", "x", 3)


def test_unknown_keys_are_ignored_as_before() -> None:
    fault = FaultPlan().arm({"kind": "drop", "note": "for the flaky-network test"})
    assert (fault.kind, fault.count) == ("drop", 1)


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_every_documented_kind_is_accepted(kind: str) -> None:
    plan = FaultPlan()
    plan.arm({"kind": kind, "seconds": 0.5})
    assert plan.describe() == [{"kind": kind, "count": 1, "path": None, "seconds": 0.5}]


async def test_the_control_api_answers_400_naming_the_field(raw: Any) -> None:
    status, body = await raw.control("faults", {"kind": "http_500", "count": 0})
    assert status == 400
    assert body["error"] == "count must be a positive integer (got 0)"
    status, state = await raw.control("state", method="GET")
    assert (status, state["faults"]) == (200, [])
