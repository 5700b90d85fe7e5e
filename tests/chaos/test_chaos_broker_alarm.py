"""Chaos, with a process: a real RabbitMQ resource alarm under a static-mode relay
(tests/broker_alarm.py).

The disk alarm blocks the relay's AMQP connection for several ``confirm_timeout``s
while mail arrives at a steady rate. The relay must keep journaling, keep its one
connection (no reconnect every ``confirm_timeout``), say why nothing is delivered
(readiness, ``/status.json``, the metric, one log line), and once the alarm clears
deliver every mail, each once, at once. (Before: readiness stayed 200 but for a moment
after each of the stall-reconnects, and each reconnect left a blocked connection on the
broker until the alarm cleared.)
"""

from __future__ import annotations

import asyncio
import collections
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from relay.emulator import Emulator
from tests.broker_alarm import ResourceAlarm
from tests.chaos.support import (
    RelayProcess,
    amqp_section,
    copies,
    free_port,
    relay_process,
    unique_broker,
    write_config,
)
from tests.pipeline.support import Consumer, accounts
from tests.support import AMQP_URL, eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow, pytest.mark.timeout(240)]

CONFIRM_TIMEOUT = 2
HELD = 4 * CONFIRM_TIMEOUT  # seconds the alarm stays on once the relay says it is blocked


async def _metric(relay: RelayProcess, line: str) -> bool:
    async with aiohttp.ClientSession() as session, session.get(relay.url + "metrics") as resp:
        return line in (await resp.text()).splitlines()


async def _blocked(relay: RelayProcess) -> dict[str, Any] | None:
    """The readiness answer while it says the sink is blocked, else None."""
    code, ready = await relay.get("readyz")
    why = ready.get("failing", {}).get("sink:amqp", "") if isinstance(ready, dict) else ""
    return ready if code == 503 and why.startswith("RabbitMQ blocked publishing for ") else None


async def test_a_resource_alarm_holds_deliveries_says_why_and_loses_nothing(
    tmp_path: Path, resource_alarm: ResourceAlarm
) -> None:
    broker = unique_broker()
    port = free_port()
    section = amqp_section(broker, AMQP_URL).replace(
        "[sharding]", f"confirm_timeout = {CONFIRM_TIMEOUT}\n[sharding]"
    )
    async with Emulator(port=0, hold=1.0) as emu, Consumer(broker) as consumer:
        user = (await accounts(emu))[0]
        config = write_config(
            tmp_path / "relay.toml", emu, section, journal=tmp_path / "j.sqlite3", port=port
        )
        sent: list[str] = []

        async def mail() -> None:
            while True:
                sent.append(emu.state.deliver_mail(user, subject=f"alarm {len(sent)}"))
                await asyncio.sleep(0.1)

        async with relay_process(config, tmp_path / "relay.log", port) as relay:
            traffic = asyncio.create_task(mail())
            try:
                await eventually(lambda: len(copies(consumer)) >= 10, seconds=30, what="mail")
                async with resource_alarm.on():
                    ready = await eventually(
                        lambda: _blocked(relay), seconds=20, what="readiness: blocked"
                    )
                    assert "low on disk (resource alarm)" in ready["failing"]["sink:amqp"]
                    _, doc = await relay.get("status.json")
                    events = doc["journal"]["events"]
                    since = time.monotonic()
                    while time.monotonic() - since < HELD:  # four confirm timeouts
                        assert await _blocked(relay) is not None, "readiness forgot the block"
                        await asyncio.sleep(0.2)
                    _, doc = await relay.get("status.json")
                    (sink,) = doc["sinks"]
                    assert sink["connected"] is True, sink
                    assert sink["blocked"]["reason"] == "low on disk", sink
                    assert doc["journal"]["events"] > events, "the journal stopped taking mail"
                    assert await _metric(relay, 'exmail_relay_broker_blocked{link="amqp"} 1.0')
            finally:
                traffic.cancel()
                await asyncio.gather(traffic, return_exceptions=True)
            assert resource_alarm.cleared_at is not None
            cleared = resource_alarm.cleared_at
            await eventually(
                lambda: set(copies(consumer)) >= set(sent), seconds=30, what="every mail"
            )
            caught_up = time.monotonic() - cleared
            assert await _blocked(relay) is None
            code, _ = await relay.get("readyz")
            assert code == 200
            assert await _metric(relay, 'exmail_relay_broker_blocked{link="amqp"} 0.0')
        messages = [line.get("message") for line in relay.log_lines()]
    ids = collections.Counter(m.message_id for m in consumer.messages)
    assert [i for i, n in ids.items() if n > 1] == [], "a message went out twice"
    assert "RabbitMQ link stalled, reconnecting" not in messages
    assert (
        messages.count("RabbitMQ blocked publishing (resource alarm); waiting, not reconnecting")
        == 1
    )
    assert messages.count("RabbitMQ unblocked publishing") == 1
    print(
        f"\nresource alarm {HELD} s (confirm_timeout {CONFIRM_TIMEOUT} s): {len(sent)} mails, "
        f"all delivered once, {caught_up:.1f} s after the alarm cleared"
    )
