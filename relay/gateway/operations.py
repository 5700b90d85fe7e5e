"""``POST /v1/tenants/{tenant}/openapi/{operation}``: which operations, which scope, and
how a body becomes the operation's form parameters.

A body is validated exactly as :class:`~relay.exmail.ExmailClient` validates its own
calls: writes through the same request models (:class:`~relay.exmail.UserSyncRequest`,
...), reads and the rest through the same checks (:mod:`relay.exmail.validation`). Any
violation raises :class:`~relay.exmail.InvalidRequest` before anything is sent (400).

Keys may be spelled as the protocol documents them (``Alias``, ``PartyPath``,
``group_alias``) or as the request models name them (``alias``, ``party_paths``): case
and underscores are ignored, and the protocol's singular list names (``Slave``,
``PartyPath``) stand for the models' plural fields. An unknown key is refused.

A JSON body is held to its model's JSON Schema first (:func:`json_values`): each value
must be of the JSON type the schema gives it (a string is not a number, a lone string is
not an array, ``192.0`` is the integer 192, ``null`` is an absent optional key), so the
lenient reading of forms (every value a string) never lets through JSON the OpenAPI
document forbids.

Scopes: reads need ``read``; ``mail/authkey`` (a login ticket) needs ``sso``; everything
else needs ``write``. ``listen`` is not offered: the relay's listener owns it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from relay.exmail import (
    READ_OPERATIONS,
    GroupAddRequest,
    GroupAllowListRequest,
    GroupMembersRequest,
    InvalidRequest,
    Params,
    PartySyncRequest,
    Request,
    UserSyncRequest,
)
from relay.exmail import validation as v
from relay.gateway.bodies import AliasBody, CheckBody, PartyBody, VerBody

__all__ = ["OPERATIONS", "WRITE_MODELS", "Operation", "Values", "json_values", "params_for"]

Values = Mapping[str, str | list[str]]
"""A parsed body: one value per key, or a list for a repeated key / JSON array."""


@dataclass(frozen=True, slots=True)
class Operation:
    name: str
    scope: str
    build: Callable[[dict[str, Any]], Params]
    body: type[BaseModel]
    """The body's model: its JSON Schema is the body's in the OpenAPI document."""

    @property
    def keys(self) -> frozenset[str]:
        """The field names the body may carry (after :func:`_field`)."""
        return frozenset(self.body.model_fields)


def _one(fields: dict[str, Any], key: str, *, required: bool = True) -> str:
    value = fields.get(key)
    if value is None:
        if required:
            raise InvalidRequest(f"{key} is required")
        return ""
    if isinstance(value, list):
        if len(value) != 1:
            raise InvalidRequest(f"{key} takes one value, got {len(value)}")
        value = value[0]
    return str(value)


def _list(fields: dict[str, Any], key: str) -> list[str]:
    value = fields.get(key, [])
    return [str(item) for item in (value if isinstance(value, list) else [value])]


def _alias(param: str) -> Callable[[dict[str, Any]], Params]:
    return lambda f: [(param, v.check_email(param, _one(f, "alias")))]


def _party(f: dict[str, Any]) -> Params:
    return [("PartyPath", v.check_party_path("PartyPath", _one(f, "party_path", required=False)))]


def _ver(f: dict[str, Any]) -> Params:
    ver = _one(f, "ver").strip()
    if not ver.isdigit():
        raise InvalidRequest(f"Ver must be a non-negative integer, got {ver!r}")
    return [("Ver", ver)]


def _check(f: dict[str, Any]) -> Params:
    emails = v.check_emails("email", _list(f, "email"))
    if not 1 <= len(emails) <= v.MAX_CHECK_EMAILS:
        raise InvalidRequest(f"email: 1 to {v.MAX_CHECK_EMAILS} addresses, got {len(emails)}")
    return [("email", e) for e in emails]


def _model(model: type[Request]) -> Callable[[dict[str, Any]], Params]:
    def build(fields: dict[str, Any]) -> Params:
        try:
            return model.model_validate(fields).params()
        except ValidationError as exc:  # a type or bound the checks leave to pydantic
            error = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(part) for part in error["loc"]) or model.__name__
            raise InvalidRequest(f"{where}: {error['msg']}") from None

    return build


def _op(
    name: str, scope: str, build: Callable[[dict[str, Any]], Params], body: type[BaseModel]
) -> Operation:
    return Operation(name, scope, build, body)


_MODELS: dict[str, type[Request]] = {
    "user/sync": UserSyncRequest,
    "party/sync": PartySyncRequest,
    "group/add": GroupAddRequest,
    "group/addmember": GroupMembersRequest,
    "group/deletemember": GroupMembersRequest,
    "group/addallowlist": GroupAllowListRequest,
    "group/delallowlist": GroupAllowListRequest,
}

WRITE_MODELS: Mapping[str, type[Request]] = _MODELS
"""The request model of each write taking one (the OpenAPI document shows its schema)."""

OPERATIONS: dict[str, Operation] = {
    "user/get": _op("user/get", "read", _alias("Alias"), AliasBody),
    "user/list": _op("user/list", "read", _ver, VerBody),
    "user/check": _op("user/check", "read", _check, CheckBody),
    "mail/newcount": _op("mail/newcount", "read", _alias("Alias"), AliasBody),
    "mail/authkey": _op("mail/authkey", "sso", _alias("Alias"), AliasBody),
    "party/list": _op("party/list", "read", _party, PartyBody),
    "partyuser/list": _op("partyuser/list", "read", _party, PartyBody),
    "user/openwxtoken": _op("user/openwxtoken", "write", _alias("alias"), AliasBody),
    "user/closewxtoken": _op("user/closewxtoken", "write", _alias("alias"), AliasBody),
    **{name: _op(name, "write", _model(model), model) for name, model in _MODELS.items()},
}
assert {n for n, o in OPERATIONS.items() if o.scope != "write"} == READ_OPERATIONS

# The protocol's spellings that do not reduce to a field name by case and underscores.
_SYNONYMS = {
    "partypath": ("party_paths", "party_path"),
    "slave": ("slaves",),
    "groupname": ("name",),
    "groupadmin": ("admin",),
    "groupalias": ("alias",),
}


def _squash(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


def _field(key: str, operation: Operation) -> str:
    squashed = _squash(key)
    for name in operation.keys:
        if _squash(name) == squashed:
            return name
    for name in _SYNONYMS.get(squashed, ()):
        if name in operation.keys:
            return name
    raise InvalidRequest(f"{operation.name} takes no parameter {key!r}")


def params_for(operation: Operation, values: Values) -> Params:
    """The validated form parameters of ``operation`` from a parsed body."""
    fields: dict[str, Any] = {}
    for key, value in values.items():
        name = _field(key, operation)
        if name in fields:
            raise InvalidRequest(f"{operation.name}: {key!r} is given twice")
        fields[name] = value
    return operation.build(fields)


@functools.cache
def _json_types(body: type[BaseModel]) -> dict[str, tuple[frozenset[str], frozenset[str]]]:
    """Per field of ``body``: the JSON types its schema allows, and its array items'."""
    schema = body.model_json_schema()
    defs: dict[str, Any] = schema.get("$defs", {})

    def types(node: dict[str, Any]) -> frozenset[str]:
        if "$ref" in node:
            return types(defs[node["$ref"].rsplit("/", 1)[1]])
        if "anyOf" in node:
            return frozenset().union(*(types(branch) for branch in node["anyOf"]))
        kind = node.get("type")
        return frozenset([kind] if isinstance(kind, str) else kind or ())

    def items(node: dict[str, Any]) -> frozenset[str]:
        found: set[str] = set()
        for branch in node.get("anyOf", [node]):
            if "items" in branch:
                found |= types(branch["items"])
        return frozenset(found)

    return {name: (types(prop), items(prop)) for name, prop in schema["properties"].items()}


def _json_scalar(value: object, allowed: frozenset[str], key: str) -> str:
    """``value`` as form text, if its JSON type is one of ``allowed``."""
    if isinstance(value, bool):
        ok = "boolean" in allowed
        text = "1" if value else "0"
    elif isinstance(value, int):
        ok, text = bool(allowed & {"integer", "number"}), str(value)
    elif isinstance(value, float):
        whole = value.is_integer() and "integer" in allowed
        ok = whole or "number" in allowed
        text = str(int(value)) if whole else str(value)
    elif isinstance(value, str):
        ok, text = "string" in allowed, value
    else:
        ok, text = False, ""
    if not ok:
        raise InvalidRequest(f"{key} must be of JSON type {' or '.join(sorted(allowed))}")
    return text


def json_values(operation: Operation, data: Mapping[str, object]) -> Values:
    """A JSON object body as form values, each of the type its schema gives it; a
    ``null`` where the schema allows it is an absent key."""
    fields = _json_types(operation.body)
    out: dict[str, str | list[str]] = {}
    for key, value in data.items():
        allowed, items = fields[_field(key, operation)]
        if value is None and "null" in allowed:
            continue
        if isinstance(value, list):
            if "array" not in allowed:
                raise InvalidRequest(f"{key} takes one value, not an array")
            out[key] = [_json_scalar(item, items, f"{key}[]") for item in value]
        elif allowed <= {"array", "null"}:
            raise InvalidRequest(f"{key} must be an array")
        else:
            out[key] = _json_scalar(value, allowed - {"array", "null"}, key)
    return out
