"""Logs: JSON lines with tenant/event fields, redaction of every secret, rate-limited outages."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from relay.emulator import Emulator
from relay.ops.logs import RedactFilter, TextFormatter, configure, scrub
from tests.ops.conftest import KEY, Control, eventually, get_json, settings, tenant
from tests.support import BROKER_ADDRESS, running_relay

WRONG_SECRET = "wrong-secret-Qz81"
AMQP_PASSWORD = "amqp-pw-Xy93"
AUTH_TOKEN = "tok-secret-4567"
BASIC_PASSWORD = "basic-pw-6612"
BROKER_HOST, BROKER_PORT = BROKER_ADDRESS


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logging.getLogger("relay").level)
    stream = io.StringIO()
    yield stream
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])
    logging.getLogger("relay").setLevel(saved[2])


def test_scrub_patterns() -> None:
    assert scrub("Authorization: Bearer abc.def") == "Authorization: Bearer ***"
    assert "s3" not in scrub("POST /token?client_secret=s3&x=1")
    assert scrub('{"access_token": "zzz"}') == '{"access_token": "***"}'
    assert scrub("amqp://u:p4ss@h:5672/") == "amqp://u:***@h:5672/"
    assert scrub("key whsec_QUJDREVGR0g=") == "key whsec_***"
    assert scrub("plain known-value here", ["known-value"]) == "plain *** here"


def test_filter_scrubs_message_args_extras_and_tracebacks() -> None:
    record = logging.LogRecord(
        "relay.x", logging.ERROR, __file__, 1, "failed with %s", ("sekrit-1234",), None
    )
    record.error = "token sekrit-1234 refused"
    record.details = {"nested": ["sekrit-1234"]}
    try:
        raise RuntimeError("boom sekrit-1234")
    except RuntimeError as exc:
        record.exc_info = (RuntimeError, exc, exc.__traceback__)
    assert RedactFilter(["sekrit-1234"]).filter(record)
    line = TextFormatter().format(record)
    assert "sekrit-1234" not in line
    assert "failed with ***" in line and "boom ***" in line


def test_auto_format_is_json_off_a_tty(captured: io.StringIO) -> None:
    configure(format="auto", level="info", stream=captured)
    logging.getLogger("relay.test").info("hello", extra={"tenant": "acme", "event_id": "e1"})
    line = json.loads(captured.getvalue().splitlines()[-1])
    assert line["message"] == "hello" and line["tenant"] == "acme" and line["event_id"] == "e1"
    assert line["level"] == "info" and line["logger"] == "relay.test"


@pytest.mark.rabbitmq  # the broker itself refuses the wrong password
async def test_no_secret_reaches_logs_status_or_metrics(
    tmp_path: Path,
    emulator: Emulator,
    control: Control,
    http: aiohttp.ClientSession,
    captured: io.StringIO,
) -> None:
    from relay.cli.run import secrets_of

    s = settings(
        tmp_path,
        tenants=[
            tenant(emulator),
            tenant(emulator, name="broken", secret=WRONG_SECRET, client_id="bad@example.com"),
        ],
        amqp={
            "enabled": True,
            "url": f"amqp://guest:{AMQP_PASSWORD}@{BROKER_HOST}:{BROKER_PORT}/",
            "exchange": "test.ops.never",
            "retry_max": 0.5,
        },
        console={"enabled": True},
        # Static: the broker refuses this password, and in lease mode (the default with
        # [amqp]) no tenant would run to log an upstream fault.
        sharding={"mode": "static"},
        http={
            "port": 0,
            "auth_token": AUTH_TOKEN,
            "basic_user": "ops",
            "basic_password": BASIC_PASSWORD,
        },
        log={"format": "json", "level": "debug"},
    )
    configure(format="json", level="debug", secrets=list(secrets_of(s)), stream=captured)
    auth = {"Authorization": f"Bearer {AUTH_TOKEN}"}
    async with running_relay(s) as running:
        url = running.server.url if running.server else ""
        await control.fault("http_500", 3)
        await control.mail((await control.aliases())[0])

        async def errors_seen() -> bool:
            text = captured.getvalue()
            return "upstream fault" in text and "cannot connect" in text

        await eventually(errors_seen, what="upstream and broker errors logged")
        # A request with credentials that are wrong must not echo them either.
        async with http.get(url, headers={"Authorization": "Bearer " + KEY}) as resp:
            assert resp.status == 401
        _, status = await get_json(http, url + "status.json", headers=auth)
        async with http.get(url, headers=auth) as resp:
            page = await resp.text()
        async with http.get(url + "metrics") as resp:
            metrics_text = await resp.text()
        _, ready = await get_json(http, url + "readyz")
        service_repr = repr(running.service) + repr(running.service.drainers)
        access_token = (await control.state())["companies"][0]["token"]
    logs = captured.getvalue()
    assert logs.strip(), "nothing was logged"
    for line in logs.splitlines():
        json.loads(line)  # every line is one JSON document
    surfaces = {
        "logs": logs,
        "status.json": json.dumps(status),
        "page": page,
        "metrics": metrics_text,
        "readyz": json.dumps(ready),
        "reprs": service_repr + repr(s),
    }
    secrets = [KEY, WRONG_SECRET, AMQP_PASSWORD, AUTH_TOKEN, BASIC_PASSWORD]
    if access_token:
        secrets.append(str(access_token))
    for where, text in surfaces.items():
        for secret in secrets:
            assert secret not in text, f"{secret!r} leaked into {where}"
    assert any(json.loads(line).get("tenant") == "broken" for line in logs.splitlines()), (
        "tenant field missing from upstream fault lines"
    )


async def test_outage_is_logged_once_per_minute(
    tmp_path: Path, emulator: Emulator, control: Control, captured: io.StringIO
) -> None:
    from relay.runtime import listener as source

    assert source.LOG_EVERY == 60.0
    configure(format="json", level="debug", stream=captured)
    await control.fault("http_500", 1000)
    s = settings(tmp_path, tenants=[tenant(emulator)], console={"enabled": True})
    async with running_relay(s) as running:
        listener = running.service.listeners[0]

        async def many_failures() -> bool:
            return listener.status.failures >= 4

        await eventually(many_failures, seconds=30, what="four upstream failures")
    faults = [
        json.loads(line)
        for line in captured.getvalue().splitlines()
        if json.loads(line)["message"] == "upstream fault, backing off"
    ]
    assert listener.status.failures >= 4
    assert len(faults) == 1, faults
    assert faults[0]["tenant"] == "acme" and faults[0]["failures"] == 1
