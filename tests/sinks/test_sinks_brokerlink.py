"""The broker link on the real RabbitMQ: it connects, runs its holder's session, shows
``connected`` and ``last_error`` (no password), reconnects after a cut with a new session,
gives a connection up on request or when the broker closes a channel the session keeps,
bounds operations, logs a lasting fault once per period, and a crash of the session
surfaces at once and again on close."""

from __future__ import annotations

import asyncio
import logging
import socket

import aiormq
import pytest
from aio_pika.abc import AbstractChannel, AbstractConnection
from pydantic import SecretStr

from relay.core.backoff import Backoff
from relay.sinks.brokerlink import BrokerLink, LinkLost
from tests.support import AMQP_URL, BROKER_ADDRESS, TcpProxy, eventually

pytestmark = pytest.mark.rabbitmq


class Holder:
    """A session that declares nothing, marks the link up and holds until lost."""

    def __init__(self) -> None:
        self.sessions = 0
        self.downs = 0
        self.lost = 0
        self.errors: list[str | None] = []  # last_error as each loss was noticed
        self.link: BrokerLink | None = None
        self.channel: AbstractChannel | None = None

    async def session(self, connection: AbstractConnection) -> None:
        assert self.link is not None
        self.channel = await self.link.op(connection.channel())
        self.link.watch(self.channel, "the test channel")
        self.sessions += 1
        self.link.up()
        await self.link.until_lost()

    def on_down(self) -> None:
        self.downs += 1

    def on_lost(self) -> None:
        self.lost += 1
        self.errors.append(self.link.last_error if self.link is not None else None)


def linked(url: str, holder: Holder, **options: object) -> BrokerLink:
    link = BrokerLink(
        url=SecretStr(url),
        session=holder.session,
        name="test link",
        heartbeat=2,
        on_down=holder.on_down,
        on_lost=holder.on_lost,
        **options,  # type: ignore[arg-type]
    )
    holder.link = link
    return link


async def test_connects_and_reconnects_with_a_new_session_after_a_cut() -> None:
    proxy = TcpProxy(*BROKER_ADDRESS)
    await proxy.start()
    url = AMQP_URL.replace(f"{BROKER_ADDRESS[0]}:{BROKER_ADDRESS[1]}", f"127.0.0.1:{proxy.port}")
    holder = Holder()
    try:
        async with linked(url, holder) as link:
            assert await link.wait_connected(20), link.last_error
            assert link.down_since is None and link.last_error is None
            await proxy.stop()  # the connection is reset
            await eventually(lambda: not link.connected, seconds=10, what="the loss seen")
            assert holder.lost == 1, "on_lost ran once, at the loss"
            await eventually(lambda: holder.downs == 1, seconds=10, what="on_down")
            assert link.down_since is not None and link.last_error is not None
            await proxy.start()  # the same port again
            assert await link.wait_connected(20), link.last_error
            assert holder.sessions == 2 and link.last_error is None
        assert holder.downs == 2, "closing ends the session too"
    finally:
        await proxy.stop()


async def test_lose_gives_the_connection_up_and_a_new_session_starts() -> None:
    holder = Holder()
    async with linked(AMQP_URL, holder) as link:
        assert await link.wait_connected(20)
        first = link.connection
        link.lose("unconfirmed for a heartbeat")
        assert not link.connected and holder.lost == 1
        with pytest.raises(LinkLost, match="unconfirmed for a heartbeat"):
            link.check()
        await eventually(
            lambda: link.connected and link.connection is not first, seconds=20, what="again"
        )
        assert first is not None and first.is_closed, "the old connection was closed"


async def test_a_kept_channel_closed_by_the_broker_loses_the_link_and_a_new_session_starts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    holder = Holder()
    async with linked(AMQP_URL, holder) as link:
        assert await link.wait_connected(20)
        first, channel = link.connection, holder.channel
        assert channel is not None
        # A passive declare of a missing exchange: the broker closes this channel only.
        with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity):
            await channel.get_exchange("test.link.no-such-exchange", ensure=True)
        await eventually(lambda: holder.lost, seconds=5, what="the link lost")
        [error] = holder.errors
        assert error is not None
        assert error.startswith("the broker closed the test channel: 404 NOT_FOUND")
        assert "no exchange 'test.link.no-such-exchange'" in error
        await eventually(
            lambda: link.connected and link.connection is not first, seconds=20, what="again"
        )
        assert holder.sessions == 2 and holder.downs == 1 and link.last_error is None
        assert first is not None and first.is_closed, "the old connection was closed"
    assert "broker connection lost: the broker closed the test channel: 404" in caplog.text


async def test_an_unreachable_broker_is_retried_logged_once_per_period_without_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="relay.sinks.brokerlink")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        port = sock.getsockname()[1]
        holder = Holder()
        url = f"amqp://relay:pa55-word-9@127.0.0.1:{port}/"
        link = linked(url, holder, backoff=Backoff(base=0.01, cap=0.05), log_every=60)
        async with link:
            await eventually(lambda: len(caplog.records) >= 1, seconds=10, what="a warning")
            await asyncio.sleep(1.0)  # many more attempts, each refused
            assert not link.connected and holder.sessions == 0
            assert link.last_error is not None and "cannot connect" in link.last_error
            assert "pa55-word-9" not in link.last_error + repr(link)
    warnings = [r for r in caplog.records if r.name == "relay.sinks.brokerlink"]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "pa55-word-9" not in caplog.text


async def test_a_crash_of_the_session_surfaces_at_once_and_on_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    crashes: list[BaseException] = []
    link: BrokerLink

    async def broken(connection: AbstractConnection) -> None:
        link.up()
        raise KeyError("a bug")

    link = BrokerLink(
        url=SecretStr(AMQP_URL), session=broken, name="broken", on_crash=crashes.append
    )
    await link.__aenter__()
    await eventually(lambda: bool(crashes), seconds=20, what="the crash")
    assert link.last_error == "internal error: KeyError" and not link.connected
    assert "crashed" in caplog.text
    with pytest.raises(KeyError, match="a bug"):
        await link.close()


async def test_operations_are_bounded() -> None:
    holder = Holder()
    async with linked(AMQP_URL, holder, op_timeout=0.2) as link:
        assert await link.wait_connected(20)
        with pytest.raises(TimeoutError):
            await link.op(asyncio.sleep(5))
