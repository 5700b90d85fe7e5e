"""Silent partitions: a link that stalls (open, but no byte passes) must fail readiness
within 30 s, naming the part, and heal when the link resumes. The stalling proxy sits
in front of the real RabbitMQ and of the real emulator; the settings are short so the
tests are quick, and a pure test checks that the defaults keep the 30 s bound."""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from prometheus_client import CollectorRegistry

from relay.app.settings import AmqpSettings, TenantSettings
from relay.app.wiring import client_for
from relay.core.routing import Router
from relay.emulator import Emulator
from relay.journal import Journal
from relay.ops.metrics import Metrics, PrometheusObserver
from relay.runtime.listener import Listener
from relay.runtime.supervisor import RelayService, silent_for
from tests.pipeline.support import Broker, Consumer, accounts, control, settings_for
from tests.support import BROKER_ADDRESS, TcpProxy, eventually, running_relay

READY_WITHIN = 30.0  # the bound, from the stall to a failing readiness


def test_the_defaults_fail_a_stalled_broker_link_within_30_s() -> None:
    a = AmqpSettings()
    # Idle link: aiormq drops it after (heartbeat + 1) * 3 s without a frame, checked
    # every heartbeat / 2 s. Busy link: the oldest unconfirmed publish is looked at
    # at most every second.
    idle = (a.heartbeat + 1) * 3 + a.heartbeat / 2
    busy = a.confirm_timeout + 1.0
    assert idle < READY_WITHIN and busy < READY_WITHIN


def test_a_silent_exmail_fails_readiness_after_the_listen_deadline(tmp_path: Path) -> None:
    # The bound is the listen deadline: a margin above the server's hold, never below it
    # (an idle poll is answered at the hold). With the defaults it is within 30 s of the
    # stall; a longer hold (set to match a server that holds longer) moves it.
    t = TenantSettings(name="t", client_id="admin@example.com", client_secret="x")
    assert t.hold + 5 <= t.listen_timeout <= READY_WITHIN
    emulator_hold = inspect.signature(Emulator).parameters["hold"].default
    assert emulator_hold <= t.hold, "the emulator answers idle polls within the hold"
    now = [1000.0]
    listener = Listener(
        tenant="t",
        client=client_for(t),
        journal=Journal(tmp_path / "unopened.sqlite3"),
        route=Router(()),
        clock=lambda: now[0],
    )
    assert listener.silence_limit == t.listen_timeout
    listener.status.unanswered_since = now[0]
    listener.status.state = "backoff"
    assert silent_for(listener, now[0] + t.listen_timeout) is None
    assert silent_for(listener, now[0] + t.listen_timeout + 1) == t.listen_timeout + 1
    listener.status.state = "paused"  # waiting on the journal, not on Exmail
    assert silent_for(listener, now[0] + t.listen_timeout + 1) is None


async def test_a_stalled_exmail_link_fails_readiness_and_recovers(
    tmp_path: Path, emulator: Emulator
) -> None:
    proxy = TcpProxy("127.0.0.1", urlsplit(emulator.base_url).port or 0)
    await proxy.start()
    via = f"http://127.0.0.1:{proxy.port}"
    tenant = {
        "api_url": via + "/openapi/",
        "token_url": via + "/cgi-bin/token",
        "login_url": via + "/cgi-bin/login",
        "request_timeout": 2,
    }
    s = settings_for(emulator, tmp_path, tenant=tenant, console={"enabled": True})
    observer = PrometheusObserver(Metrics(CollectorRegistry()))
    registry = observer.metrics.registry

    def listens(outcome: str) -> float:
        labels = {"tenant": "acme", "outcome": outcome}
        return registry.get_sample_value("exmail_relay_listen_requests_total", labels) or 0.0

    try:
        async with running_relay(s, observer=observer) as running:
            service = running.service
            [listener] = service.listeners

            async def tenant_ok() -> bool:
                return "tenant:acme" in (await service.health()).ok

            await eventually(lambda: listener.status.state == "connected", what="a listen answered")
            assert await tenant_ok()

            proxy.stall()
            stalled_at = _now()
            reason = await eventually(
                lambda: _failing(service, "tenant:acme"),
                seconds=READY_WITHIN,
                what="readiness to name the silent tenant",
            )
            assert reason.startswith("no answer from Exmail for "), reason
            assert _now() - stalled_at < READY_WITHIN
            await eventually(lambda: listens("timeout") >= 1, what="a listen timeout")
            assert listener.status.state != "connected"
            assert "listen: no answer within 6 s" in (listener.status.last_error or "")

            proxy.resume()
            await eventually(tenant_ok, seconds=READY_WITHIN, what="ready after resume")
            alias = (await accounts(emulator))[0]
            await control(emulator, "mail", {"to": alias})
            await eventually(
                lambda: listener.status.events_by_type["exmail.mail.new"] >= 1,
                what="a mail after the link resumed",
            )
            assert listener.status.state == "connected"
    finally:
        await proxy.stop()


@pytest.mark.rabbitmq
async def test_a_stalled_broker_link_fails_readiness_and_loses_nothing(
    tmp_path: Path, emulator: Emulator, broker: Broker
) -> None:
    proxy = TcpProxy(*BROKER_ADDRESS)
    await proxy.start()
    window = 16
    amqp = {
        **broker.amqp_settings(f"amqp://guest:guest@127.0.0.1:{proxy.port}/"),
        "heartbeat": 2,
        "confirm_timeout": 3,
        "max_in_flight": window,
        "retry_max": 1,
    }
    s = settings_for(emulator, tmp_path, amqp=amqp)
    try:
        async with Consumer(broker) as consumer, running_relay(s) as running:
            service = running.service

            async def sink_ok() -> bool:
                return "sink:amqp" in (await service.health()).ok

            await eventually(sink_ok, what="connected to the broker")
            aliases = await accounts(emulator)
            for alias in aliases[:5]:
                await control(emulator, "mail", {"to": alias})
            await consumer.wait_for(5)

            proxy.stall()
            stalled_at = _now()
            for alias in aliases[:10]:  # traffic into the stalled link
                await control(emulator, "mail", {"to": alias})
            reason = await eventually(
                lambda: _failing(service, "sink:amqp"),
                seconds=READY_WITHIN,
                what="readiness to name the stalled sink",
            )
            assert _now() - stalled_at < READY_WITHIN
            assert reason == "not connected: publish not confirmed within 3 s", reason

            proxy.resume()
            await eventually(sink_ok, seconds=READY_WITHIN, what="ready after resume")

            async def drained() -> bool:
                stats = await service.journal.stats()
                sink = stats.sinks.get("amqp")
                return (sink is None or sink.pending == 0) and stats.events >= 15

            await eventually(drained, seconds=READY_WITHIN, what="the backlog delivered")
            stats = await service.journal.stats()
            sink = stats.sinks.get("amqp")
            assert sink is None or sink.dead == 0

            def every_event_arrived() -> bool:
                ids = {m.message_id for m in consumer.messages}
                return len(ids) == stats.events

            await eventually(every_event_arrived, what="every event at the consumer")
            ids = [m.message_id for m in consumer.messages]
            # At-least-once: only what was in flight when the link stalled comes twice.
            assert len(ids) - len(set(ids)) <= window
    finally:
        await proxy.stop()


async def _failing(service: RelayService, part: str) -> str | None:
    return (await service.health()).failing.get(part)


def _now() -> float:
    return asyncio.get_running_loop().time()


@pytest.mark.rabbitmq
async def test_an_idle_stalled_broker_link_is_dropped_by_heartbeats(
    tmp_path: Path, emulator: Emulator, broker: Broker
) -> None:
    proxy = TcpProxy(*BROKER_ADDRESS)
    await proxy.start()
    amqp = {**broker.amqp_settings(f"amqp://guest:guest@127.0.0.1:{proxy.port}/"), "heartbeat": 1}
    s = settings_for(emulator, tmp_path, amqp=amqp)
    try:
        async with Consumer(broker) as consumer, running_relay(s) as running:
            service = running.service

            async def sink_ok() -> bool:
                return "sink:amqp" in (await service.health()).ok

            await eventually(sink_ok, what="connected to the broker")
            proxy.stall()  # nothing in flight: only the heartbeats can tell
            reason = await eventually(
                lambda: _failing(service, "sink:amqp"),
                seconds=READY_WITHIN,
                what="readiness to name the stalled sink",
            )
            assert reason.startswith("not connected: "), reason

            proxy.resume()
            await eventually(sink_ok, seconds=READY_WITHIN, what="ready after resume")
            alias = (await accounts(emulator))[0]
            await control(emulator, "mail", {"to": alias})
            await consumer.wait_for(1)
    finally:
        await proxy.stop()
