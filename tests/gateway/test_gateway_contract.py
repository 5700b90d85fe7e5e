"""The OpenAPI document is the contract: schemathesis, with every check it has, against a
live relay and the emulator over loopback.

Where it sits: ``/v1/openapi.json`` is generated from the gateway's models
(:mod:`relay.gateway.openapi`); this test loads it from a running relay and lets
schemathesis generate requests from it, valid and invalid, for every operation, write
operations included (they reach the emulator), and every method a path does not list.
Each answer must be what the document says: no 5xx, only documented statuses, content
types, headers and bodies, every request the document allows accepted (no undocumented
400), every request it forbids refused, and ``405`` with ``Allow`` for other methods.

The document is loaded once at collection, as the relay builds it
(:func:`~relay.gateway.openapi.openapi_document`), so each operation is a test of its own;
:func:`test_the_relay_serves_the_tested_document` checks the live relay serves that same
document. The relay and the emulator run on their own event loop in a thread
(schemathesis calls them with blocking ``requests``); the client has every scope and no
rate limit; the path's
tenant is a served one, so requests reach the handlers (an unknown tenant is 404 before
any body is read): ``acme`` (the BizMail OpenApi), and for the operations only the second
API has (``x-api`` ``["api2"]``) ``orient`` (``api = "api2"``). An operation both APIs
have is called on ``acme``: a body of its second-API variant is 404
``operation-not-in-api`` there, which the document allows. ``[gateway] max_body_bytes``
is 4 MiB here, so a list one over its bound (1001 tag members) reaches the validation
(400) instead of the body bound (413, which is not a refusal of invalid data).
Bounded and repeatable: a fixed seed, derandomized Hypothesis,
25 generated examples per operation besides the coverage phase's cases (about 13 s on a
2-core machine at load 2.5).

Run it alone: ``.venv/bin/python -m pytest tests/gateway/test_gateway_contract.py -q``.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.config import SchemathesisConfig
from schemathesis.openapi import from_dict

from relay.emulator import Emulator
from relay.gateway.openapi import openapi_document
from tests.gateway.api2_support import both_apis_settings
from tests.gateway.conftest import CLIENTS
from tests.support import running_relay

KEY = "contract-key-000000000000001"
CONTRACT_CLIENT: dict[str, Any] = {
    "name": "contract",
    "key": KEY,
    "scopes": ["sso", "read", "token", "write"],
    "rate": 1_000_000,
    "burst": 1_000_000,
}
SEED = 19
MAX_EXAMPLES = 25
"""Generated examples per operation, on top of the coverage phase's cases."""

load_all_checks()
ALL_CHECKS = CHECKS.get_all()
"""Every check schemathesis has ("--checks all")."""


class LiveRelay:
    """The emulator and a relay with the contract client, on an event loop of their own."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="live-relay", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except Exception as exc:  # noqa: BLE001 - start() or stop() re-raises it in the test
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with Emulator(port=0, hold=0.5) as emu:
            s = both_apis_settings(
                emu,
                self.tmp,
                clients=[*CLIENTS, CONTRACT_CLIENT],
                gateway={"max_body_bytes": 4 * 1024 * 1024},
            )
            async with running_relay(s) as run:
                assert run.server is not None
                self.url = run.server.url.rstrip("/")
                self._ready.set()
                await self._stop.wait()

    def start(self) -> str:
        self._thread.start()
        if not self._ready.wait(60) or self._error is not None:
            raise RuntimeError("the relay did not start") from self._error
        return self.url

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        assert not self._thread.is_alive(), "the relay did not stop"
        if self._error is not None:
            raise self._error


@pytest.fixture(scope="module")
def live_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    relay = LiveRelay(tmp_path_factory.mktemp("contract"))
    url = relay.start()
    try:
        yield url
    finally:
        relay.stop()


def _api2_only() -> str:
    """A regex of the paths of the operations only the second API has."""
    paths = [
        re.escape(path)
        for path, methods in openapi_document()["paths"].items()
        if methods.get("post", {}).get("x-api") == ["api2"]
    ]
    assert paths, "the document lists the second API's catalogue"
    return "^(?:" + "|".join(paths) + ")$"


CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": SEED,
        "headers": {"Authorization": f"Bearer {KEY}"},
        "parameters": {"path.tenant": "acme"},
        "operations": [
            {"include-path-regex": _api2_only(), "parameters": {"path.tenant": "orient"}}
        ],
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True},
    }
)
schema = from_dict(openapi_document(), config=CONFIG)


def test_the_relay_serves_the_tested_document(live_relay: str) -> None:
    answer = requests.get(f"{live_relay}/v1/openapi.json", timeout=30)
    assert answer.status_code == 200
    assert answer.json() == openapi_document()


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,  # a loaded machine answers slowly; time is not the contract
    database=None,  # nothing carried over between runs: the same cases every time
    suppress_health_check=list(HealthCheck),
)
def test_every_answer_keeps_the_openapi_contract(case: Any, live_relay: str) -> None:
    case.call_and_validate(base_url=live_relay, checks=ALL_CHECKS, timeout=30)


def test_all_means_all() -> None:
    """The run above uses every check, among them the ones issue 19 measured."""
    names = {getattr(check, "__name__", type(check).__name__) for check in ALL_CHECKS}
    assert {
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "positive_data_acceptance",
        "unsupported_method",
        "missing_required_header",
        "ignored_auth",
    } <= names, names
