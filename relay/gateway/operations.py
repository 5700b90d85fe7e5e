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

Scopes: reads need ``read``; ``mail/authkey`` (a login ticket) needs ``sso``; everything
else needs ``write``. ``listen`` is not offered: the relay's listener owns it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

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

__all__ = ["OPERATIONS", "WRITE_MODELS", "Operation", "Values", "params_for"]

Values = Mapping[str, str | list[str]]
"""A parsed body: one value per key, or a list for a repeated key / JSON array."""


@dataclass(frozen=True, slots=True)
class Operation:
    name: str
    scope: str
    build: Callable[[dict[str, Any]], Params]
    keys: frozenset[str]
    """The field names the body may carry (after :func:`_field`)."""


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
        return model.model_validate(fields).params()

    return build


def _op(name: str, scope: str, build: Callable[[dict[str, Any]], Params], *keys: str) -> Operation:
    return Operation(name, scope, build, frozenset(keys))


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
    "user/get": _op("user/get", "read", _alias("Alias"), "alias"),
    "user/list": _op("user/list", "read", _ver, "ver"),
    "user/check": _op("user/check", "read", _check, "email"),
    "mail/newcount": _op("mail/newcount", "read", _alias("Alias"), "alias"),
    "mail/authkey": _op("mail/authkey", "sso", _alias("Alias"), "alias"),
    "party/list": _op("party/list", "read", _party, "party_path"),
    "partyuser/list": _op("partyuser/list", "read", _party, "party_path"),
    "user/openwxtoken": _op("user/openwxtoken", "write", _alias("alias"), "alias"),
    "user/closewxtoken": _op("user/closewxtoken", "write", _alias("alias"), "alias"),
    **{
        name: _op(name, "write", _model(model), *model.model_fields)
        for name, model in _MODELS.items()
    },
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
