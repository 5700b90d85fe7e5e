"""``AmqpSink`` when the confirm watchdog drops its link while publishes crowd the channel.

What a benchmark under heavy CPU starvation showed: the watchdog dropped the link while
a burst of publishes was still passing the channel lock one loop iteration at a time.
The publisher then waiting for room in aiormq's writer queue never got it (the writer
had stopped with the connection), so it, and every publish behind it on the channel
lock, waited forever; their stale entries made the watchdog drop every new connection
a second after it came up, and the drainer's window stayed full of them.

Here the loop is starved for real (a task that blocks it for a few milliseconds every
iteration, as the benchmark's load did) and a burst is in flight: once with a broker
gone silent (a stalling proxy, resumed later), which the watchdog must notice; once
with a healthy broker, where the starved burst alone can outlast ``confirm_timeout``
(its publishes count from before the channel lock). Either way every send answers
within a bound, the link comes back and stays up, and new publishes are confirmed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from relay.core.delivery import Delivered, Delivery, Outcome
from relay.sinks.amqp import AmqpSink
from tests.sinks.conftest import delivery, queued_ids
from tests.support import BROKER_ADDRESS, TcpProxy, eventually

pytestmark = pytest.mark.rabbitmq

BURST = 400  # with the loop starved below, the burst needs seconds to pass the lock
STARVED = 0.005  # seconds the loop is blocked on every iteration
CONFIRM_TIMEOUT = 1.0


@contextlib.asynccontextmanager
async def starved_loop() -> AsyncIterator[None]:
    """Block the event loop for ``STARVED`` s on every iteration while the block runs."""

    async def hog() -> None:
        while True:
            time.sleep(STARVED)  # noqa: ASYNC251 - the starvation under test
            await asyncio.sleep(0)

    task = asyncio.create_task(hog())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize("silent_broker", [True, False], ids=["silent-broker", "starved-loop"])
async def test_a_link_dropped_under_a_burst_answers_every_send_and_recovers(
    silent_broker: bool, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="relay.sinks.amqp")
    proxy = TcpProxy(*BROKER_ADDRESS)
    await proxy.start()
    sink = AmqpSink(
        url=SecretStr(f"amqp://guest:guest@127.0.0.1:{proxy.port}/"),
        exchange=queue_name,
        queue=queue_name,
        queue_type="classic",
        heartbeat=60,  # only the confirm watchdog may drop the link here
        confirm_timeout=CONFIRM_TIMEOUT,
    )
    burst = [delivery(n) for n in range(1, BURST + 1)]
    sends: list[asyncio.Task[Outcome]] = []
    fresh: list[Delivery] = []
    try:
        async with sink:
            assert await sink.wait_connected(20), sink.last_error
            assert isinstance(await sink.send(delivery(0)), Delivered)

            async with starved_loop():
                if silent_broker:
                    proxy.stall()  # open, silent: no confirm comes back
                sends = [asyncio.create_task(sink.send(d)) for d in burst]
                await eventually(
                    lambda: not sink.connected or all(s.done() for s in sends),
                    seconds=30,
                    what="the watchdog to drop the link, or the burst to be confirmed",
                )
            if silent_broker:
                # Dropped with the burst in flight (passing the channel lock, or queued).
                assert not sink.connected
                assert sum(not s.done() for s in sends) > 20
                await asyncio.sleep(2 * CONFIRM_TIMEOUT)  # silent well past the limit
                proxy.resume()

            # Every send answers, each Unavailable (its row stays pending) or Delivered.
            done, hung = await asyncio.wait(sends, timeout=15)
            assert not hung, f"{len(hung)} of {BURST} sends never answered"
            outcomes = Counter(type(s.result()).__name__ for s in done)
            assert set(outcomes) <= {"Unavailable", "Delivered"}, outcomes
            assert outcomes["Unavailable"] > 0 or not silent_broker

            # The link comes back, stays up past several watchdog periods, and confirms.
            assert await sink.wait_connected(30), sink.last_error
            fresh = [delivery(n) for n in range(BURST + 1, BURST + 21)]
            answers = await asyncio.wait_for(asyncio.gather(*map(sink.send, fresh)), 20)
            assert all(isinstance(a, Delivered) for a in answers), answers
            await asyncio.sleep(3 * CONFIRM_TIMEOUT)
            assert sink.connected, sink.last_error
    finally:
        for s in sends:
            s.cancel()
        await proxy.stop()

    stalls = [r for r in caplog.records if "link stalled" in r.getMessage()]
    # Dropped once, not again and again (with a healthy broker, only if the starved
    # burst outlasted confirm_timeout: publishes count from before the channel lock).
    assert len(stalls) == 1 if silent_broker else len(stalls) <= 1, caplog.text
    # Settled only after the confirm: every send answered Delivered is in the queue.
    delivered = {d.event_id for d in fresh}
    delivered |= {
        d.event_id for d, s in zip(burst, sends, strict=True) if s.result() == Delivered()
    }
    assert delivered <= set(await queued_ids(queue_name))
