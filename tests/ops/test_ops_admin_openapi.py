"""The admin API's OpenAPI document is complete, valid and checked in.

- every route :func:`relay.ops.admin_routes.admin_app` mounts, with its method, is in
  :func:`relay.ops.admin_openapi.admin_document`, and nothing else is;
- the document is valid OpenAPI 3.1 (``openapi-spec-validator``);
- ``docs/admin-openapi.json`` is the document (regenerate with
  ``.venv/bin/python tests/ops/test_ops_admin_openapi.py --write``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from openapi_spec_validator import validate

from relay.core.bearer import TokenSet
from relay.journal import Journal
from relay.ops.admin import AdminApi
from relay.ops.admin_openapi import admin_document
from relay.ops.admin_peers import Peers
from relay.ops.admin_routes import admin_app

ROOT = Path(__file__).resolve().parents[2]
CHECKED_IN = ROOT / "docs" / "admin-openapi.json"
REGENERATE = "python tests/ops/test_ops_admin_openapi.py --write"


def mounted(tmp: Path) -> set[tuple[str, str]]:
    """(method, path) of every mounted route."""
    admin = AdminApi(
        tokens=TokenSet.of("t" * 20),
        journal=Journal(tmp / "unused.sqlite3"),
        peers=Peers(me="0", live=lambda: {"0"}),
    )
    return {
        (route.method.lower(), "/admin/v1" + route.resource.canonical)  # type: ignore[union-attr]
        for route in admin_app(admin).router.routes()
    }


def documented() -> set[tuple[str, str]]:
    return {
        (method, path)
        for path, operations in admin_document()["paths"].items()
        for method in operations
    }


def test_every_mounted_route_is_documented_and_nothing_more(tmp_path: Path) -> None:
    routes = mounted(tmp_path)
    assert ("post", "/admin/v1/endpoints/{name}/enable") in routes
    assert routes == documented()


def test_the_document_is_valid_openapi_3_1() -> None:
    document = admin_document()
    validate(document)  # type: ignore[arg-type]
    assert document["openapi"] == "3.1.0"
    mutating = {
        (m, p) for p, ops in document["paths"].items() for m, op in ops.items() if m == "post"
    }
    assert all(document["paths"][p][m].get("x-audited") for m, p in mutating), (
        "every mutating route says it is audited"
    )


def render() -> str:
    return json.dumps(admin_document(), indent=2, ensure_ascii=False) + "\n"


def test_the_checked_in_document_matches() -> None:
    assert CHECKED_IN.read_text() == render(), f"regenerate it: {REGENERATE}"


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        CHECKED_IN.write_text(render())
        print(f"wrote {CHECKED_IN}")
