"""``GET /v1/openapi.json`` is a valid OpenAPI 3.1 document (a real validator) of every
mounted gateway route, and ``/v1/docs`` renders it as plain HTML with no outside
resource."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
from aiohttp import web
from openapi_spec_validator import validate

from relay.app.wiring import Running
from relay.gateway.operations import OPERATIONS
from tests.gateway.conftest import base


def mounted(app: web.Application) -> set[tuple[str, str]]:
    """(method, canonical path) of every route under /v1/ and /sso/, sub-apps included."""
    found: set[tuple[str, str]] = set()
    for resource in app.router.resources():
        sub = getattr(resource, "_app", None)
        if isinstance(sub, web.Application):
            found |= mounted(sub)
            continue
        for route in resource:
            if route.method in ("*", "HEAD"):
                continue  # the catch-all 404s, and HEAD twins of GET
            found.add((route.method.lower(), resource.canonical))
    return {(m, p) for m, p in found if p.startswith(("/v1/", "/sso/"))}


async def fetch_document(http: aiohttp.ClientSession, run: Running) -> dict[str, Any]:
    async with http.get(f"{base(run)}/v1/openapi.json") as resp:  # no key: it is public
        assert resp.status == 200
        assert resp.content_type == "application/json"
        document: dict[str, Any] = await resp.json()
        return document


async def test_the_document_is_valid_openapi_31(
    relay: Running, http: aiohttp.ClientSession
) -> None:
    document = await fetch_document(http, relay)
    assert document["openapi"].startswith("3.1")
    validate(document)
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer"}
    user_sync = document["paths"]["/v1/tenants/{tenant}/openapi/user/sync"]["post"]
    assert user_sync["x-scopes"] == ["write"]
    body = user_sync["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/UserSyncRequest"}
    assert "alias" in document["components"]["schemas"]["UserSyncRequest"]["properties"]
    problem = user_sync["responses"]["403"]["content"]["application/problem+json"]["schema"]
    assert problem == {"$ref": "#/components/schemas/ProblemBody"}
    token = document["paths"]["/v1/tenants/{tenant}/token"]["get"]
    assert token["x-scopes"] == ["token"] and "Scope: token" in token["description"]


async def test_every_mounted_route_is_in_the_document(
    relay: Running, http: aiohttp.ClientSession
) -> None:
    document = await fetch_document(http, relay)
    assert relay.server is not None
    routes = mounted(relay.server._app)  # the app the relay really serves
    assert ("get", "/sso/{tenant}/{email}") in routes
    assert ("get", "/v1/tenants/{tenant}/token") in routes
    documented = {(m, p) for p, methods in document["paths"].items() for m in methods}
    for method, path in routes:
        if "{operation}" in path:  # one entry per operation
            for name in OPERATIONS:
                assert (method, path.replace("{operation}", name)) in documented, name
        else:
            assert (method, path) in documented, (method, path)


async def test_the_docs_page_is_self_contained(relay: Running, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{base(relay)}/v1/docs") as resp:
        assert resp.status == 200
        assert resp.content_type == "text/html"
        assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
        page = await resp.text()
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)=['"]?(https?:)?//""", page)
    for text in (
        "/v1/tenants/{tenant}/users/{email}/unread",
        "max_age",
        "Scopes: <b>token</b>",
        "/sso/{tenant}/{email}",
        "&quot;email&quot;: &quot;alice@example.com&quot;",
    ):
        assert text in page, text


async def test_every_route_that_reads_a_body_documents_its_413(
    relay: Running, http: aiohttp.ClientSession
) -> None:
    """Every authenticated route may be forwarded (its body read whole, bounded by
    ``[gateway] max_body_bytes``), and the browser route too: each lists 413, and the
    problem's schema holds the limit."""
    document = await fetch_document(http, relay)
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            if op["security"] or path.startswith("/sso/"):
                assert "413" in op["responses"], (method, path)
    problem = document["components"]["schemas"]["ProblemBody"]["properties"]
    assert "limit" in problem


async def test_other_methods_are_405_with_allow_on_every_documented_path(
    relay: Running, http: aiohttp.ClientSession
) -> None:
    """A method a documented path does not take is 405 + ``Allow`` (problem+json), also
    without a key; ``TRACE`` was 404 before issue 19."""
    document = await fetch_document(http, relay)
    for template, methods in document["paths"].items():
        path = template.replace("{tenant}", "acme").replace("{email}", "lina@example.com")
        allowed = {m.upper() for m in methods}
        for method in ("TRACE", "DELETE", "PUT", "PATCH", "POST", "GET"):
            if method in allowed:
                continue
            async with http.request(method, f"{base(relay)}{path}") as resp:
                assert resp.status == 405, (method, path)
                listed = {m.strip() for m in resp.headers["Allow"].split(",")}
                assert listed - {"HEAD"} == allowed, (method, path, listed)
                if path.startswith("/v1/"):
                    assert resp.content_type == "application/problem+json"
                    body = await resp.json()
                    assert body["type"].endswith(":method-not-allowed")


async def test_every_enforced_limit_is_in_the_document(
    relay: Running, http: aiohttp.ClientSession
) -> None:
    """The limits issue 19 found missing: the path's email, ``stale``, an empty alias."""
    document = await fetch_document(http, relay)
    user = document["paths"]["/v1/tenants/{tenant}/users/{email}"]["get"]
    email = next(p for p in user["parameters"] if p["name"] == "email")["schema"]
    assert email["maxLength"] == 254 and email["pattern"].startswith("^")
    schemas = document["components"]["schemas"]
    assert schemas["RefreshBody"]["properties"]["stale"]["minLength"] == 1
    assert schemas["SsoBody"]["properties"]["email"]["pattern"] == email["pattern"]
    assert schemas["AliasBody"]["additionalProperties"] is False
    assert schemas["CheckBody"]["properties"]["email"]["maxItems"] == 20
    form = document["paths"]["/v1/tenants/{tenant}/openapi/user/sync"]["post"]["requestBody"]
    form_schema = form["content"]["application/x-www-form-urlencoded"]["schema"]
    assert form_schema == {"$ref": "#/components/schemas/UserSyncRequestForm"}
    assert "anyOf" not in schemas["UserSyncRequestForm"]["properties"]["name"]
    for status in ("400", "409", "413"):
        assert status in user["responses"]
