"""The seam between the typed operations and the client's transport.

:class:`Caller` declares the one method the operation mixins
(:class:`~relay.exmail2._directory.DirectoryCalls`,
:class:`~relay.exmail2._services.ServiceCalls`) use: ``_call(operation, query=, body=)``
returns the answer's object once ``errcode`` is 0. :class:`relay.exmail2.Exmail2Client`
implements it (token, HTTP, retries); the mixins only build requests and read answers,
so each stays a page of plain code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from relay.exmail._decode import shape_error
from relay.exmail._exceptions import MalformedResponse
from relay.exmail._json import key_form

__all__ = ["Caller", "Query", "field", "models"]

Query = list[tuple[str, str]]
M = TypeVar("M", bound=BaseModel)


class Caller:
    async def _call(
        self,
        operation: str,
        *,
        query: Query | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:  # pragma: no cover - the client overrides it
        raise NotImplementedError


def field(answer: Mapping[str, Any], name: str) -> Any:
    """The value of key ``name`` in an answer, matched as the models match keys."""
    wanted = key_form(name)
    for key, value in answer.items():
        if key_form(str(key)) == wanted:
            return value
    return None


def models(operation: str, answer: Mapping[str, Any], key: str, model: type[M]) -> list[M]:
    """The list under ``key`` of an answer (absent: empty), each item as ``model``; one
    validation checks the whole list and a wrong shape names the failing index."""
    items = field(answer, key)
    if items is None:
        return []
    adapter = _ADAPTERS.get(model)
    if adapter is None:
        adapter = _ADAPTERS[model] = TypeAdapter(tuple[model, ...])  # type: ignore[valid-type]
    try:
        return list(adapter.validate_python(items))
    except ValidationError as exc:
        raise MalformedResponse(shape_error(operation, exc)) from None


_ADAPTERS: dict[type[BaseModel], TypeAdapter[Any]] = {}
