"""Which operation catalogue a tenant's ``openapi/{operation}`` takes, and the call a body
becomes: pure, no I/O.

The first API's catalogue is :data:`relay.gateway.operations.OPERATIONS`, the second's
:data:`relay.gateway.operations2.OPERATIONS2`; a tenant takes its own API's (``api``).
Three names are in both (``user/get``, ``user/list``, ``mail/newcount``) with different
bodies; ``/v1/openapi.json`` gives such an operation both bodies (``anyOf``), so a body
valid for the *other* API's variant does not break the document: it is refused 404
``operation-not-in-api``, like a name of the other catalogue, never 400. A 400 still
means "this request breaks /v1/openapi.json".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from relay.exmail import InvalidRequest, Params
from relay.gateway.operations import OPERATIONS, Operation, Values, json_values, params_for
from relay.gateway.operations2 import OPERATIONS2, Operation2, Prepared, fits, prepare
from relay.gateway.problems import Problem
from relay.gateway.upstream import API_NAMES, Api

__all__ = ["FirstCall", "SecondCall", "plan", "scope_of"]


@dataclass(frozen=True, slots=True)
class FirstCall:
    """A call of the BizMail OpenApi: the operation and its form parameters."""

    operation: Operation
    params: Params


@dataclass(frozen=True, slots=True)
class SecondCall:
    """A call of the second API: the operation and its query or JSON body."""

    operation: Operation2
    call: Prepared


def scope_of(name: str) -> str:
    """The scope ``name`` needs (the same in both APIs where both have it); 404 for a name
    neither API has."""
    first, second = OPERATIONS.get(name), OPERATIONS2.get(name)
    if first is not None:
        return first.scope
    if second is not None:
        return second.scope
    detail = (
        "listen is the relay's own (its listener holds it)"
        if name == "listen"
        else f"no operation {name!r} in either API"
    )
    raise Problem(404, "unknown-operation", "Unknown operation", detail)


def not_in_api(tenant: str, api: Api, name: str, detail: str = "") -> Problem:
    return Problem(
        404, "operation-not-in-api", "Operation not offered for this tenant's API",
        f"tenant {tenant!r} uses {API_NAMES[api]}, which has no operation {name!r}{detail}; "
        "see /v1/openapi.json (x-api of each operation)",
        extra={"api": api},
    )  # fmt: skip


def _values(operation: Operation, data: Mapping[str, Any], form: bool) -> Values:
    """A first-API body: JSON held to its schema's types (:func:`json_values`); a form as text."""
    return data if form else json_values(operation, data)


def _first(operation: Operation, data: Mapping[str, Any], form: bool) -> Params:
    return params_for(operation, _values(operation, data, form))


def _fits_first(operation: Operation, data: Mapping[str, Any], form: bool) -> bool:
    try:
        _first(operation, data, form)
    except InvalidRequest:
        return False
    return True


def plan(
    tenant: str, api: Api, name: str, data: Mapping[str, Any], *, form: bool
) -> FirstCall | SecondCall:
    """The call ``data`` (a JSON object, or a form's values when ``form``) asks of a tenant
    on ``api``: InvalidRequest (400) when it breaks the operation's schema, Problem 404
    when the operation (or this body of it) is the other API's."""
    first, second = OPERATIONS.get(name), OPERATIONS2.get(name)
    if api == "api2":
        if second is None:
            raise not_in_api(tenant, api, name)
        try:
            return SecondCall(second, prepare(second, data, form=form))
        except InvalidRequest:
            if first is not None and _fits_first(first, data, form):
                raise not_in_api(tenant, api, name, " with this body (the first API's)") from None
            raise
    if first is None:
        raise not_in_api(tenant, api, name)
    try:
        return FirstCall(first, _first(first, data, form))
    except InvalidRequest:
        if second is not None and fits(second, data, form=form):
            raise not_in_api(tenant, api, name, " with this body (the second API's)") from None
        raise
