"""Faults: upstream errors, a broker outage, backpressure. Nothing accepted is lost."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from relay.emulator import Emulator
from tests.pipeline.support import (
    Broker,
    Consumer,
    accounts,
    control,
    settings_for,
)
from tests.support import BROKER_ADDRESS, TcpProxy, eventually, running_relay

LISTEN = "/openapi/listen"


async def listen_requests(emu: Emulator) -> int:
    state = await control(emu, "state", method="GET")
    return int(state["requests"].get(LISTEN, 0))


@pytest.mark.rabbitmq
@pytest.mark.parametrize(
    ("kind", "extra"),
    [
        ("http_500", {}),
        ("errcode_1002", {}),
        ("invalid_token", {}),
        ("drop", {}),
        ("malformed", {}),
        ("delay", {"seconds": 0.5}),
    ],
)
async def test_each_upstream_fault_leaves_the_listener_running(
    emulator: Emulator, broker: Broker, tmp_path: Path, kind: str, extra: dict[str, float]
) -> None:
    user = (await accounts(emulator))[0]
    async with (
        Consumer(broker) as consumer,
        running_relay(settings_for(emulator, tmp_path, broker)) as run,
    ):
        await consumer.wait_for(1)
        await control(emulator, "faults", {"kind": kind, "count": 3, "path": LISTEN, **extra})
        # Wake the held listen so the faults are met now, then mail after them.
        await control(emulator, "mail", {"to": user, "subject": "during"})
        await eventually(lambda: _faults_spent(emulator), what=f"the {kind} faults to be consumed")
        await control(emulator, "mail", {"to": user, "subject": "after"})
        await consumer.wait_for(3, 20)
        listener = run.service.listeners[0]
        assert listener.status.state == "connected"
        if kind != "delay":
            assert listener.status.failures >= 1, "the fault was seen and classified"
    subjects = {json.loads(m.body)["data"].get("subject") for m in consumer.messages}
    assert "after" in subjects
    if kind in ("http_500", "errcode_1002", "invalid_token", "delay"):
        # These faults answer before the server hands out pushes, so nothing is lost.
        assert "during" in subjects


async def _faults_spent(emu: Emulator) -> bool:
    state = await control(emu, "state", method="GET")
    return not state["faults"]


async def test_an_outage_costs_a_bounded_number_of_requests(
    emulator: Emulator, tmp_path: Path
) -> None:
    async with running_relay(settings_for(emulator, tmp_path)) as run:
        await eventually(
            lambda: run.service.listeners[0].status.state == "connected", what="connected"
        )
        await control(emulator, "faults", {"kind": "http_500", "count": 100000, "path": LISTEN})
        user = (await accounts(emulator))[0]
        await control(emulator, "mail", {"to": user})  # wake the held listen into the outage
        before = await listen_requests(emulator)
        await asyncio.sleep(3.0)  # a measurement window (a rate), not a wait for an event
        during = await listen_requests(emulator) - before
        assert run.service.listeners[0].status.state == "backoff"
        await control(emulator, "faults", method="DELETE")
        await eventually(
            lambda: run.service.listeners[0].status.state == "connected",
            seconds=40,
            what="connected again after the outage",
        )
    # Full-jitter backoff from 0.5 s: a handful of tries in 3 s, never a hot loop.
    assert 1 <= during <= 15, during


@pytest.mark.rabbitmq
async def test_wrong_credentials_mark_the_tenant_failed_and_others_keep_working(
    emulator: Emulator, broker: Broker, tmp_path: Path
) -> None:
    settings = settings_for(emulator, tmp_path, broker)
    good = settings.tenants[0]
    bad = good.model_copy(update={"name": "wrong", "client_id": "nobody@example.com"})
    settings = settings.model_copy(update={"tenants": [good, bad]})
    user = (await accounts(emulator))[0]
    async with Consumer(broker) as consumer, running_relay(settings) as run:
        failed = run.service.listeners[1]
        await eventually(lambda: failed.status.state == "failed", what="the bad tenant to fail")
        await control(emulator, "mail", {"to": user, "subject": "still flowing"})
        await consumer.wait_for(2)
        health = await run.service.health()
        assert "tenant:wrong" in health.failing
        assert "failed" in health.failing["tenant:wrong"]
        assert "tenant:acme" in health.ok
    assert any(json.loads(m.body)["subject"] == user for m in consumer.messages)


@pytest.mark.rabbitmq
async def test_broker_outage_keeps_listening_and_delivers_everything_after(
    emulator: Emulator, broker: Broker, tmp_path: Path
) -> None:
    proxy = TcpProxy(*BROKER_ADDRESS)
    await proxy.start()
    url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/"
    settings = settings_for(emulator, tmp_path, amqp=broker.amqp_settings(url))
    users = await accounts(emulator)
    try:
        async with Consumer(broker) as consumer, running_relay(settings) as run:
            await consumer.wait_for(1)
            await proxy.stop()
            await eventually(
                lambda: not run.service.drainers[0].sink.connected, what="the sink to notice"
            )
            mails = [{"to": users[i % len(users)], "subject": f"outage {i}"} for i in range(50)]
            await control(emulator, "mail", {"mails": mails})
            journal = run.service.journal
            await eventually(lambda: journal.backlog_events >= 50, what="the journal to grow")
            health = await run.service.health()
            assert "sink:amqp" in health.failing
            assert run.service.listeners[0].status.state == "connected"
            await proxy.start()
            await consumer.wait_for(51, 60)
            await eventually(lambda: journal.backlog_events == 0, what="the backlog to drain")
            assert (await run.service.health()).healthy
    finally:
        await proxy.stop()
    subjects = [json.loads(m.body)["data"].get("subject") for m in consumer.messages]
    assert sorted(s for s in subjects if s) == sorted(f"outage {i}" for i in range(50))


@pytest.mark.rabbitmq
async def test_backpressure_pauses_the_listener_and_loses_nothing(
    emulator: Emulator, broker: Broker, tmp_path: Path
) -> None:
    proxy = TcpProxy(*BROKER_ADDRESS)  # never started: the sink cannot deliver
    await proxy.start()
    dead_port = proxy.port
    await proxy.stop()
    settings = settings_for(
        emulator,
        tmp_path,
        amqp=broker.amqp_settings(f"amqp://guest:guest@127.0.0.1:{dead_port}/"),
        journal={"path": tmp_path / "journal.sqlite3", "max_events": 5},
    )
    users = await accounts(emulator)
    async with running_relay(settings) as run:
        listener = run.service.listeners[0]
        for i in range(20):
            await control(emulator, "mail", {"to": users[0], "subject": f"bp {i}"})
            await asyncio.sleep(0.02)  # pacing: mails in separate listen answers
        await eventually(lambda: listener.status.state == "paused", what="the listener to pause")
        health = await run.service.health()
        assert "backpressure" in health.failing
        stored = run.service.journal.backlog_events
        assert 5 <= stored < 20
    # A relay whose sink works again drains the journal and resumes listening.
    working = settings_for(
        emulator, tmp_path, broker, journal={"path": tmp_path / "journal.sqlite3", "max_events": 5}
    )
    async with Consumer(broker) as consumer, running_relay(working):
        await consumer.wait_for(21, 30)  # bootstrap + 20 mails
    subjects = sorted(
        json.loads(m.body)["data"].get("subject", "")
        for m in consumer.messages
        if m.type == "exmail.mail.new"
    )
    assert subjects == sorted(f"bp {i}" for i in range(20))
