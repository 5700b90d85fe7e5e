"""Upstream errors become problem+json with the right status (emulator fault injection),
and the limits: a client's token bucket (429) and the per-tenant gate (503)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from relay.app.wiring import Running
from relay.emulator import Emulator
from tests.gateway.conftest import (
    LIMITED_KEY,
    PORTAL_KEY,
    aliases,
    base,
    bearer,
    control,
    gateway_settings,
    requests_to,
)
from tests.gateway.test_gateway_auth import assert_problem, call
from tests.support import eventually, running_relay

USER_GET = "/openapi/user/get"


@pytest.mark.parametrize(
    ("fault", "status", "kind", "errcode", "retry_after"),
    [
        ({"kind": "errcode_1002"}, 503, "upstream-unavailable", "1002", "5"),
        ({"kind": "http_500"}, 503, "upstream-unavailable", None, "5"),
        ({"kind": "api_error", "errcode": "1001"}, 409, "upstream-refused", "1001", None),
        ({"kind": "api_error", "errcode": "1310", "error": "user_not_found"}, 404,
         "upstream-not-found", "1310", None),
        ({"kind": "delay", "seconds": 3.0}, 504, "upstream-timeout", None, None),
        ({"kind": "malformed"}, 502, "upstream-failed", None, None),
    ],
)  # fmt: skip
async def test_upstream_errors_map_to_http_statuses(
    relay: Running,
    http: aiohttp.ClientSession,
    emulator: Emulator,
    fault: dict[str, Any],
    status: int,
    kind: str,
    errcode: str | None,
    retry_after: str | None,
) -> None:
    user = (await aliases(http, emulator))[0]
    await control(http, emulator, "faults", {**fault, "count": 1, "path": USER_GET})
    got, head, body = await call(
        http, "GET", f"{base(relay)}/v1/tenants/acme/users/{user}", headers=bearer(PORTAL_KEY)
    )
    assert_problem(got, head, body, status)
    assert body["type"] == f"urn:exmail-relay:problem:{kind}"
    assert body.get("errcode") == errcode
    assert head.get("Retry-After") == retry_after
    # the fault was one call: the next one succeeds (nothing was retried behind our back)
    got, _, body = await call(
        http, "GET", f"{base(relay)}/v1/tenants/acme/users/{user}", headers=bearer(PORTAL_KEY)
    )
    assert got == 200, body


async def test_a_client_over_its_rate_gets_429_with_retry_after(
    relay: Running, http: aiohttp.ClientSession
) -> None:
    url = base(relay) + "/v1/tenants"
    statuses = []
    for _ in range(3):  # burst 2, then 0.01 calls/s
        status, head, body = await call(http, "GET", url, headers=bearer(LIMITED_KEY))
        statuses.append(status)
    assert statuses == [200, 200, 429]
    assert_problem(status, head, body, 429)
    assert int(head["Retry-After"]) >= 90  # one token at 0.01/s: about 100 s
    # another client is not affected
    status, _, _ = await call(http, "GET", url, headers=bearer(PORTAL_KEY))
    assert status == 200


async def test_a_saturated_tenant_answers_503_and_the_listener_keeps_its_pool(
    emulator: Emulator, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    s = gateway_settings(
        emulator, tmp_path, gateway={"tenant_concurrency": 1, "queue_timeout": 0.2}
    )
    user = (await aliases(http, emulator))[0]
    async with running_relay(s) as run:
        url = f"{base(run)}/v1/tenants/acme/users/{user}"
        await control(http, emulator, "faults", {"kind": "delay", "seconds": 1.5, "path": USER_GET})
        before = await requests_to(http, emulator, USER_GET)
        slow = asyncio.create_task(call(http, "GET", url, headers=bearer(PORTAL_KEY)))
        try:

            async def holding() -> bool:  # the slow call holds the tenant's only slot
                return await requests_to(http, emulator, USER_GET) > before

            await eventually(holding, what="the slow call to reach Exmail")
            status, head, body = await call(http, "GET", url, headers=bearer(PORTAL_KEY))
            assert_problem(status, head, body, 503)
            assert body["type"].endswith(":tenant-busy") and head["Retry-After"] == "1"
        finally:
            first = await slow
        assert first[0] == 200
