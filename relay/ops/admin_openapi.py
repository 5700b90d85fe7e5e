"""``GET /admin/v1/openapi.json``: the admin API described (OpenAPI 3.1).

The gateway's document (``/v1/openapi.json``, :mod:`relay.gateway.openapi`) describes
the client API; this one the operators' API on the same port. A test checks that every
route :func:`relay.ops.admin_routes.admin_app` mounts is here with its method, and
``docs/admin-openapi.json`` is this document as checked in (regenerate it with
``.venv/bin/python tests/ops/test_ops_admin_openapi.py --write``).
"""

from __future__ import annotations

from typing import Any

from relay import __version__

__all__ = ["ADMIN_ROUTES", "admin_document"]

_PROBLEM = {"$ref": "#/components/schemas/Problem"}
_TIME = {
    "type": ["string", "number"],
    "description": "ISO 8601 (UTC without an offset) or Unix seconds",
}
_STR = {"type": "string"}
_FILTER: dict[str, tuple[dict[str, Any], str]] = {
    "sink": (_STR, "only this sink: amqp, console or webhook:NAME"),
    "endpoint": (_STR, "only this webhook endpoint (NAME; not with sink)"),
    "tenant": (_STR, "only this tenant's events"),
    "type": (_STR, "only this event type (CloudEvents type)"),
    "event_id": (_STR, "only this event id"),
    "since": (_TIME, "only events created at or after this time"),
    "until": (_TIME, "only events created before this time"),
}
_REPLICA = (
    {"type": "string", "pattern": "^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"},
    "only this replica (an id from a list's `replica`); default: every live replica",
)


def _query(name: str, schema: dict[str, Any], text: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": text, "schema": schema}


def _gathered(fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["replicas", "unreachable", "complete"],
        "properties": {
            "replicas": {
                "type": "array",
                "description": "one entry per replica asked: ok and its figures, or the error",
                "items": {"$ref": "#/components/schemas/ReplicaPart"},
            },
            "unreachable": {"type": "array", "items": _STR},
            "complete": {"type": "boolean", "description": "every replica answered"},
            **fields,
        },
    }


_ITEMS = {"type": "array", "items": {"type": "object"}}
_FILTER_BODY = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        **{name: schema for name, (schema, _) in _FILTER.items()},
        "replica": _REPLICA[0],
        "force": {"type": "boolean"},
    },
}
_SWITCH_BODY = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"reason": {"type": "string", "maxLength": 200}, "force": {"type": "boolean"}},
}

_HELD = {
    "type": "object",
    "description": "the held listing committed (counts only)",
    "properties": {
        **{k: {"type": "integer"} for k in ("deleted", "added", "updated", "members", "listed")},
        "polls": {"type": "integer", "description": "polls in a row that found it"},
        "since": {"type": "number", "description": "when the first of them ran"},
    },
}
_DIRECTORY = {
    "type": "object",
    "description": "the tenant's tenants[].directory of /status.json after the call",
}


def _directory_answer(fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["tenant", "replica", *fields, "directory"],
        "properties": {
            "tenant": _STR,
            "replica": {"type": "string", "description": "the replica that polls the tenant"},
            **fields,
            "directory": _DIRECTORY,
        },
    }


_CONFIRM_BODY = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "since": {
            "type": "number",
            "description": "the held listing's since, as /status.json shows it: confirm "
            "only that hold (409 hold-changed if another one is held now)",
        }
    },
}

# method, path, operationId, summary, parameters, body, answer, mutating
ADMIN_ROUTES: tuple[tuple[str, str, str, str, list[dict[str, Any]], Any, Any, bool], ...] = (
    (
        "get", "/admin/v1/deadletters", "listDeadLetters",
        "Dead letters of every replica, filtered, paged (limit per replica; next is the "
        "cursor of the following page, null at the end)",
        [*(_query(n, s, t) for n, (s, t) in _FILTER.items()), _query("replica", *_REPLICA),
         _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000},
                "at most this many per replica (100)"),
         _query("cursor", _STR, "the next of the previous page")],
        None, _gathered({"items": _ITEMS, "next": {"type": ["string", "null"]}}), False,
    ),
    (
        "post", "/admin/v1/deadletters/replay", "replayDeadLetters",
        "Queue the matching dead letters for delivery again, on every replica (or one); "
        "without sink, sinks no longer configured are skipped; an unconfigured sink is "
        "409 unless force",
        [], _FILTER_BODY, _gathered({"replayed": {"type": "integer"}}), True,
    ),
    (
        "post", "/admin/v1/deadletters/drop", "dropDeadLetters",
        "Delete the matching dead letters for good, on every replica (or one); needs a filter",
        [], _FILTER_BODY,
        _gathered({"dropped": {"type": "integer"}, "events_deleted": {"type": "integer"}}), True,
    ),
    (
        "get", "/admin/v1/endpoints", "listEndpoints",
        "Each webhook endpoint on each replica: configured, disabled (and why), pending, dead",
        [_query("replica", *_REPLICA)], None, _gathered({"items": _ITEMS}), False,
    ),
    (
        "post", "/admin/v1/endpoints/{name}/enable", "enableEndpoint",
        "Deliver to the endpoint again, on every replica", [], _SWITCH_BODY,
        _gathered({"endpoint": _STR, "disabled": {"type": "boolean"}}), True,
    ),
    (
        "post", "/admin/v1/endpoints/{name}/disable", "disableEndpoint",
        "Pause the endpoint, on every replica (its events wait in the journal)", [],
        _SWITCH_BODY, _gathered({"endpoint": _STR, "disabled": {"type": "boolean"}}), True,
    ),
    (
        "get", "/admin/v1/journal/check", "checkJournal",
        "PRAGMA integrity_check of each replica's journal file, and what each sink owes",
        [_query("replica", *_REPLICA)], None,
        _gathered({"items": _ITEMS, "ok": {"type": "boolean"}}), False,
    ),
    (
        "get", "/admin/v1/shards", "listShards",
        "Which replica holds which shard and its tenants (lease mode: as authenticated "
        "presence tells this replica)", [], None, {"type": "object"}, False,
    ),
    (
        "post", "/admin/v1/tenants/{tenant}/directory/confirm-held", "confirmHeldListing",
        "Commit the api2 tenant's held directory listing now (held for too many deletions), "
        "on the replica that polls the tenant, as the poll confirming it would: the same "
        "events and ids. Nothing held: 409 nothing-held",
        [], _CONFIRM_BODY,
        _directory_answer({"confirmed": _HELD, "events": {"type": "integer"}}), True,
    ),
    (
        "post", "/admin/v1/tenants/{tenant}/directory/poll", "pollDirectory",
        "Poll the api2 tenant's directory now, on the replica that polls it (after a poll "
        "under way); the poll's outcome as exmail_relay_directory_polls_total counts it",
        [], None, _directory_answer({"outcome": _STR}), True,
    ),
    (
        "get", "/admin/v1/openapi.json", "getAdminOpenApi", "This document (no token needed)",
        [], None, {"type": "object"}, False,
    ),
)  # fmt: skip

_ERRORS = {
    400: "Invalid filter, body or cursor",
    401: "No admin token (WWW-Authenticate)",
    403: "A token that is not the admin token",
    404: "Admin API off (no [http] admin_token), no such route, endpoint or tenant",
    405: "Method not allowed (Allow)",
    409: "Replay to a sink that is not configured (force to insist); a tenant whose "
    "directory is not polled, or with no held listing (or another one than since names)",
    413: "Body over the limit",
    502: "The replica polling the tenant cannot be reached, or refused this one",
    503: "Nobody polls the tenant right now (a takeover), or a poll under way did not end "
    "in time: nothing done, try again (Retry-After)",
    504: "Started, not done in time: /status.json says when it is",
}


def _operation(route: tuple[Any, ...]) -> dict[str, Any]:
    _, path, op_id, summary, params, body, answer, mutating = route
    public = op_id == "getAdminOpenApi"
    if "{name}" in path:
        params = [
            {"name": "name", "in": "path", "required": True, "schema": _STR,
             "description": "the [[webhooks]] name"},
        ]  # fmt: skip
    tenant = "{tenant}" in path
    if tenant:
        params = [
            {"name": "tenant", "in": "path", "required": True, "schema": _STR,
             "description": "the [[tenants]] name (an api2 tenant with directory polls)"},
        ]  # fmt: skip
    responses: dict[str, Any] = {
        "200": {"description": "OK", "content": {"application/json": {"schema": answer}}}
    }
    if not public:
        wanted = [400, 401, 403, 404, 405] + ([409, 413] if mutating else [])
        wanted += [502, 503, 504] if tenant else []
        for status in wanted:
            responses[str(status)] = {
                "description": _ERRORS[status],
                "content": {"application/problem+json": {"schema": _PROBLEM}},
            }
    op: dict[str, Any] = {
        "operationId": op_id,
        "summary": summary,
        "parameters": params,
        "responses": responses,
        "security": [] if public else [{"adminToken": []}],
    }
    if mutating:
        op["x-audited"] = True
    if body is not None:
        op["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": body}},
        }
    return op


def admin_document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in ADMIN_ROUTES:
        paths.setdefault(route[1], {})[route[0]] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "exmail-relay admin API",
            "version": __version__,
            "description": "Dead letters, endpoints, the journal check and shard ownership, "
            "across every replica, and an api2 tenant's directory polls on the replica that "
            "runs them, on the ops port. See docs/operations.md.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "adminToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "[http] admin_token (never a [[clients]] key)",
                }
            },
            "schemas": {
                "Problem": {
                    "type": "object",
                    "required": ["type", "title", "status", "detail"],
                    "properties": {
                        "type": {"type": "string"},
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "detail": {"type": "string"},
                        "instance": {"type": "string"},
                    },
                },
                "ReplicaPart": {
                    "type": "object",
                    "required": ["replica", "ok"],
                    "properties": {
                        "replica": {"type": "string"},
                        "ok": {"type": "boolean"},
                        "error": {"type": "string"},
                    },
                },
            },
        },
    }
