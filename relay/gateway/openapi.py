"""``GET /v1/openapi.json`` and ``GET /v1/docs``: the gateway described, from its models.

The document is OpenAPI 3.1. Every body schema is a pydantic model's JSON Schema
(:mod:`relay.gateway.bodies`, the client's request models for the writes of
``openapi/...``, the second API's bodies of :mod:`relay.gateway.operations2`,
:class:`~relay.gateway.bodies.UserAnswer`), gathered under ``components/schemas``.
Every error is ``application/problem+json`` (:class:`~relay.gateway.bodies.ProblemBody`).
Authentication is the ``bearerAuth`` scheme (a ``[[clients]]`` key); the scope a route
needs is in its description and in the ``x-scopes`` extension. The ``openapi/{operation}``
route is listed once per operation of either API (each has its own body and scope), with
``x-api`` naming the APIs that have it; an operation both have takes either body
(``anyOf``, the first API's first), the tenant's API deciding which applies.

``/v1/docs`` is the same document as plain server-rendered HTML: no script, no CDN.
A test checks that every mounted ``/v1/`` and ``/sso/`` route is in the document.
"""

from __future__ import annotations

import functools
import html
import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from relay import __version__
from relay.exmail import validation as v
from relay.exmail2 import App
from relay.gateway.bodies import (
    ProblemBody,
    RefreshBody,
    SsoBody,
    SsoUrl,
    TenantList,
    TokenAnswer,
    UnreadAnswer,
    UserAnswer,
)
from relay.gateway.operations import OPERATIONS
from relay.gateway.operations2 import OPERATIONS2

__all__ = ["docs_page", "openapi_document"]

_REF = "#/components/schemas/{model}"
_PROBLEM = "application/problem+json"
_Param = tuple[str, str, str, dict[str, Any]]
"""name, where (path/query), description, JSON Schema."""
_EMAIL_SCHEMA = {"type": "string", "pattern": v.EMAIL_PATTERN, "maxLength": v.MAX_EMAIL_CHARS}
_TENANT: _Param = (
    "tenant", "path", "the relay's tenant name ([[tenants]] name)", {"type": "string"},
)  # fmt: skip
_EMAIL: _Param = ("email", "path", "the user's address", _EMAIL_SCHEMA)
_APP: _Param = (
    "app", "query", "api2 tenants: whose token, one of the second API's applications "
    "(default directory); an openapi tenant has one token and takes no app (404)",
    {"type": "string", "enum": [a.value for a in App]},
)  # fmt: skip
_MAX_AGE: _Param = (
    "max_age", "query", "seconds a held count may be old (60)", {"type": "number", "minimum": 0},
)  # fmt: skip
_STATUS_TEXT = {
    200: "OK", 302: "Redirect to the login page",
    400: "Invalid request, or a body cut short of its Content-Length",
    401: "No or unknown key", 403: "Missing scope or tenant not allowed",
    404: "Unknown tenant, user or operation, or an operation (or body) of the other API "
         "than the tenant's (operation-not-in-api)",
    409: "Exmail refused a valid request (its state or its own rules: an address in use, "
         "a domain it does not serve, ...; errcode says which), or an api2 tenant has no "
         "secret for the application the call needs (app-not-configured)",
    413: "Body over [gateway] max_body_bytes (declared or counted; forwarded calls too)",
    415: "Unsupported media type", 421: "Tenant owned by another replica (no peer_url)",
    429: "Rate limited (Retry-After)", 502: "Upstream or peer failed",
    503: "Exmail temporarily unavailable or tenant busy (Retry-After)",
    504: "Exmail or the peer did not answer in time", 508: "Forwarding loop",
}  # fmt: skip
# 413: every authenticated call may be forwarded to the owning replica, and a forwarded
# request's body is read (whole, bounded) whatever the method.
# 400: a body cut short of its Content-Length (read before forwarding, too).
_AUTHED_ERRORS = (400, 401, 403, 404, 409, 413, 421, 429, 502, 503, 504, 508)


_WHICH: dict[tuple[str, ...], str] = {
    ("openapi",): "BizMail OpenApi tenants only",
    ("api2",): "second-API (api2) tenants only",
    (): "both APIs: an openapi tenant takes the first body schema, an api2 tenant the second",
}


@dataclass(frozen=True)
class _Route:
    method: str
    path: str
    operation_id: str
    summary: str
    scopes: tuple[str, ...]
    params: tuple[_Param, ...] = ()
    body: type[BaseModel] | None = None
    answer: type[BaseModel] | None = None
    errors: tuple[int, ...] = _AUTHED_ERRORS
    form: bool = False
    """The body may also be a urlencoded form."""
    example: dict[str, Any] | None = None
    alt_body: type[BaseModel] | None = None
    """The second API's body for an operation both APIs have (the body is the first's)."""
    alt_form: bool = False
    apis: tuple[str, ...] = ()
    """``openapi/...``: the tenant APIs offering the operation (``x-api``)."""
    public: bool = False
    """No key needed."""
    content_type: str = "application/json"


def _routes() -> list[_Route]:
    tenant_routes = "/v1/tenants/{tenant}"
    routes = [
        _Route("get", "/v1/tenants", "listTenants", "The tenants this client may use", (),
               answer=TenantList),
        _Route("get", tenant_routes + "/users/{email}", "getUser",
               "user/get, as typed JSON (one shape for both APIs)",
               ("read",), (_TENANT, _EMAIL), answer=UserAnswer),
        _Route("get", tenant_routes + "/users/{email}/unread", "getUnread",
               "The user's unread count: from listen when younger than max_age, else "
               "mail/newcount", ("read",),
               (_TENANT, _EMAIL, _MAX_AGE),
               answer=UnreadAnswer, errors=_AUTHED_ERRORS),
        _Route("post", tenant_routes + "/sso", "postSso", "A one-click login URL for a mailbox",
               ("sso",), (_TENANT,), SsoBody, SsoUrl, (415, *_AUTHED_ERRORS),
               form=True, example={"email": "alice@example.com"}),
        _Route("get", tenant_routes + "/token", "getToken",
               "Borrow the tenant's access token (fetched only if none is held)", ("token",),
               (_TENANT, _APP), answer=TokenAnswer),
        _Route("post", tenant_routes + "/token/refresh", "refreshToken",
               "Compare-and-swap refresh: a new token only if `stale` is still the current "
               "one and at least [gateway] min_token_age (60 s) old or refused upstream, else "
               "the current one (a herd causes one fetch)", ("token",), (_TENANT, _APP),
               RefreshBody, TokenAnswer, _AUTHED_ERRORS,
               example={"stale": "<the token Exmail refused>"}),
        _Route("get", "/v1/openapi.json", "getOpenApi", "This document (OpenAPI 3.1)", (),
               errors=(), public=True),
        _Route("get", "/v1/docs", "getDocs", "This document as an HTML page", (), errors=(),
               public=True, content_type="text/html"),
    ]  # fmt: skip
    for name in sorted(OPERATIONS.keys() | OPERATIONS2.keys()):
        first, second = OPERATIONS.get(name), OPERATIONS2.get(name)
        apis = tuple(api for api, op in (("openapi", first), ("api2", second)) if op)
        which = _WHICH.get(apis, _WHICH[()])
        main = first.body if first is not None else second.body if second is not None else None
        scope = first.scope if first is not None else second.scope if second is not None else ""
        routes.append(
            _Route(
                "post",
                f"{tenant_routes}/openapi/{name}",
                "openapi_" + name.replace("/", "_"),
                f"Exmail {name} ({which}): the body is validated by the request model of "
                "the tenant's API; the answer is the upstream JSON",
                (scope,),
                (_TENANT,),
                main,
                None,
                (415, *_AUTHED_ERRORS),
                form=first is not None or (second is not None and second.form),
                alt_body=second.body if first is not None and second is not None else None,
                alt_form=second is not None and second.form,
                apis=apis,
            )
        )
    return routes


def _example(schema: dict[str, Any], defs: dict[str, Any], name: str = "") -> Any:
    if "$ref" in schema:
        return _example(defs[schema["$ref"].rsplit("/", 1)[1]], defs, name)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return _example(schema[key][0], defs, name)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        keys = schema.get("required") or list(props)[:1]
        return {k: _example(props[k], defs, k) for k in keys}
    if kind == "array":
        return [_example(schema.get("items", {}), defs, name)]
    if kind == "integer":
        return 0
    if kind == "boolean":
        return False
    if kind == "number":
        return 0.0
    lowered = name.lower()
    if "alias" in lowered or "email" in lowered or lowered in ("admin", "slaves"):
        return "alice@example.com"
    return name or "string"


def _form_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` as a urlencoded form can carry it: a form has no ``null``, so an
    optional key is left out instead (its ``null`` branch and default dropped)."""
    out: dict[str, Any] = json.loads(json.dumps(schema))
    for prop in out.get("properties", {}).values():
        branches = prop.get("anyOf")
        if branches and {"type": "null"} in branches:
            kept = [b for b in branches if b != {"type": "null"}]
            del prop["anyOf"]
            if len(kept) == 1:
                prop.update(kept[0])
            else:
                prop["anyOf"] = kept
            if prop.get("default", "") is None:
                del prop["default"]
    return out


@functools.cache
def _document_text() -> str:
    routes = _routes()
    models: list[type[BaseModel]] = [ProblemBody]
    for route in routes:
        models += [
            m
            for m in (route.body, route.alt_body, route.answer)
            if m is not None and m not in models
        ]
    pairs: list[tuple[type[BaseModel], Any]] = [(m, "validation") for m in models]
    refs, top = models_json_schema(pairs, by_alias=False, ref_template=_REF)
    schemas: dict[str, Any] = top.get("$defs", {})

    def ref(model: type[BaseModel]) -> dict[str, Any]:
        return refs[(model, "validation")]

    def problem(status: int) -> dict[str, Any]:
        out: dict[str, Any] = {
            "description": _STATUS_TEXT[status],
            "content": {_PROBLEM: {"schema": ref(ProblemBody)}},
        }
        if status in (429, 503):
            out["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
        if status == 401:
            out["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
        return out

    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        scopes = ", ".join(route.scopes) or ("none (public)" if route.public else "any")
        op: dict[str, Any] = {
            "operationId": route.operation_id,
            "summary": route.summary,
            "description": f"{route.summary}.\n\nScope: {scopes}.",
            "security": [] if route.public else [{"bearerAuth": []}],
            "x-scopes": list(route.scopes),
            **({"x-api": list(route.apis)} if route.apis else {}),
            "parameters": [
                {
                    "name": pname,
                    "in": where,
                    "required": where == "path",
                    "description": text,
                    "schema": schema,
                }
                for pname, where, text, schema in route.params
            ],
        }
        if route.body is not None:
            op["requestBody"] = _request_body(route, ref, schemas)
        answer_schema = ref(route.answer) if route.answer is not None else {"type": "object"}
        if route.content_type != "application/json":
            answer_schema = {"type": "string"}
        op["responses"] = {
            "200": {
                "description": "OK",
                "content": {route.content_type: {"schema": answer_schema}},
            },
            **{str(status): problem(status) for status in sorted(route.errors)},
        }
        paths.setdefault(route.path, {})[route.method] = op
    paths["/sso/{tenant}/{email}"] = {"get": _sso_link_operation()}
    document = {
        "openapi": "3.1.0",
        "info": {
            "title": "exmail-relay API gateway",
            "version": __version__,
            "description": "Exmail through the relay, the one owner of each tenant's access "
            "token. See docs/gateway.md. A method not listed for a path is answered 405 "
            "with an Allow header (before authentication); a path not listed is 404.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a key of a [[clients]] entry",
                }
            },
        },
    }
    return json.dumps(document, ensure_ascii=False)


def _form_ref(model: type[BaseModel], ref: Any, schemas: dict[str, Any]) -> dict[str, Any]:
    name = ref(model)["$ref"].rsplit("/", 1)[1]
    schemas.setdefault(name + "Form", _form_schema(schemas[name]))
    return {"$ref": _REF.format(model=name + "Form")}


def _required(model: type[BaseModel]) -> bool:
    return bool(model.model_json_schema().get("required"))


def _request_body(route: _Route, ref: Any, schemas: dict[str, Any]) -> dict[str, Any]:
    """A route's request body: one model's schema, or (an operation both APIs have) the
    first API's and the second's as ``anyOf``."""
    assert route.body is not None
    example = route.example or _example(
        schemas.get(route.body.__name__, {}), schemas, route.body.__name__
    )
    json_schema = ref(route.body)
    forms = [_form_ref(route.body, ref, schemas)] if route.form else []
    # A body with no required key may be left out (party/list: the root).
    required = _required(route.body)
    if route.alt_body is not None:
        json_schema = {"anyOf": [ref(route.body), ref(route.alt_body)]}
        if route.alt_form:
            forms.append(_form_ref(route.alt_body, ref, schemas))
        required = required and _required(route.alt_body)
    content: dict[str, Any] = {"application/json": {"schema": json_schema, "example": example}}
    if forms:
        form_schema = forms[0] if len(forms) == 1 else {"anyOf": forms}
        content["application/x-www-form-urlencoded"] = {"schema": form_schema}
    return {"required": required, "content": content}


def _sso_link_operation() -> dict[str, Any]:
    page = {"text/html": {"schema": {"type": "string"}}}
    query = [
        ("exp", "expiry, Unix seconds"),
        ("sig", "base64url HMAC-SHA256 of tenant\\nemail\\nexp with the client's link_secret"),
    ]
    return {
        "operationId": "ssoLink",
        "summary": "Follow a signed SSO link (browsers): 302 to the tenant's login page",
        "description": "A link signed with a client's link_secret (docs/gateway-links.md). "
        "No bearer key: the signature is the credential.\n\nScope: sso (of the signing "
        "client, which must be allowed the tenant).",
        "security": [],
        "x-scopes": ["sso"],
        "parameters": [
            {
                "name": n,
                "in": "path",
                "required": True,
                "description": d,
                "schema": schema,
            }
            for n, _, d, schema in (_TENANT, _EMAIL)
        ]
        + [
            {
                "name": n,
                "in": "query",
                "required": True,
                "description": d,
                "schema": {"type": "string"},
            }
            for n, d in query
        ],
        "responses": {
            "302": {
                "description": _STATUS_TEXT[302],
                "headers": {"Location": {"schema": {"type": "string"}}},
            },
            "403": {"description": "Tampered, expired or replayed link", "content": page},
            "413": {
                "description": "A body over [gateway] max_body_bytes (the link was forwarded "
                "to the replica owning the tenant, which reads the body whole first)",
                "content": page,
            },
            "502": {"description": "Exmail could not sign the user in", "content": page},
            "503": {"description": "Too many single-use links held", "content": page},
        },
    }


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the gateway (a fresh copy)."""
    document: dict[str, Any] = json.loads(_document_text())
    return document


def _h(value: object) -> str:
    return html.escape(str(value), quote=True)


def _scopes(op: dict[str, Any]) -> str:
    if not op["security"] and not op["x-scopes"]:
        return "none (public)"
    return ", ".join(op["x-scopes"]) or "any valid key"


def docs_page(document: dict[str, Any]) -> str:
    """The document as one self-contained HTML page (no script, no external resource)."""
    out = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{_h(document['info']['title'])}</title><style>",
        "body{font:15px/1.45 system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em}",
        "code,pre{font:13px ui-monospace,monospace}pre{background:#f4f4f4;padding:.6em}",
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em}",
        ".m{font-weight:bold;text-transform:uppercase}</style></head><body>",
        f"<h1>{_h(document['info']['title'])} <small>{_h(document['info']['version'])}</small>"
        "</h1>",
        f"<p>{_h(document['info']['description'])} Machine-readable: "
        "<a href='openapi.json'>openapi.json</a>. Send <code>Authorization: Bearer "
        "&lt;key&gt;</code>; errors are <code>application/problem+json</code>.</p>",
        "<ul>",
    ]
    entries = [
        (path, method, op)
        for path, methods in document["paths"].items()
        for method, op in methods.items()
    ]
    out += [
        f"<li><a href='#{_h(op['operationId'])}'><span class='m'>{_h(m)}</span> "
        f"<code>{_h(p)}</code></a></li>"
        for p, m, op in entries
    ]
    out.append("</ul>")
    for path, method, op in entries:
        out.append(
            f"<h2 id='{_h(op['operationId'])}'><span class='m'>{_h(method)}</span> "
            f"<code>{_h(path)}</code></h2><p>{_h(op['summary'])}</p>"
            f"<p>Scopes: <b>{_h(_scopes(op))}</b></p>"
        )
        if op["parameters"]:
            out.append("<table><tr><th>parameter</th><th>in</th><th>description</th></tr>")
            out += [
                f"<tr><td><code>{_h(p['name'])}</code></td><td>{_h(p['in'])}</td>"
                f"<td>{_h(p.get('description', ''))}</td></tr>"
                for p in op["parameters"]
            ]
            out.append("</table>")
        body = op.get("requestBody", {}).get("content", {}).get("application/json")
        if body is not None:
            types = ", ".join(op["requestBody"]["content"])
            out.append(
                f"<p>Body ({_h(types)}), e.g.:</p>"
                f"<pre>{_h(json.dumps(body.get('example', {}), indent=2))}</pre>"
            )
        codes = ", ".join(f"{code} {r['description']}" for code, r in op["responses"].items())
        out.append(f"<p>Answers: {_h(codes)}</p>")
    out.append("</body></html>")
    return "".join(out)
