"""Suite-wide rules: a test that talks to RabbitMQ is marked ``rabbitmq``, so that
``pytest -m "not rabbitmq"`` runs on a machine without a broker.

Enforced in every run, not once:

- a test that requests a fixture which itself needs the broker (``broker``,
  ``amqp_names``, ``proxy``) is marked at collection;
- every ``socket.connect`` this process makes to the broker's address (127.0.0.1:5672,
  or the one in ``RELAY_TEST_AMQP_URL``) is recorded (``tests.support.recorded_sockets``),
  and a test that is not marked but connected fails, naming where it connected from.

Relays started as subprocesses connect outside this process: those tests are marked by
hand, and ``RELAY_TEST_AMQP_URL`` pointed at a closed port with ``-m "not rabbitmq"``
proves none was missed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.broker_alarm import ResourceAlarm
from tests.support import BROKER_ADDRESS, SocketUse, recorded_sockets

# Fixtures that open a broker connection themselves (declare, proxy or clean up), or
# act on the broker (a resource alarm).
BROKER_FIXTURES = frozenset({"broker", "amqp_names", "proxy", "resource_alarm"})

_BROKER_PORTS = frozenset({BROKER_ADDRESS[1], 5672})
_BROKER_HOSTS = frozenset({BROKER_ADDRESS[0], "127.0.0.1", "::1", "localhost"})


def _to_broker(use: SocketUse) -> bool:
    target = use.target
    return (
        use.event == "socket.connect"
        and isinstance(target, tuple)
        and len(target) >= 2
        and target[1] in _BROKER_PORTS
        and target[0] in _BROKER_HOSTS
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & BROKER_FIXTURES and item.get_closest_marker("rabbitmq") is None:
            item.add_marker(pytest.mark.rabbitmq)


@pytest.fixture(autouse=True)
def _broker_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that is not marked ``rabbitmq`` but connected to the broker.

    Autouse fixtures are set up first and torn down last: connections made by other
    fixtures (deleting a test's queue at teardown) count too."""
    if request.node.get_closest_marker("rabbitmq") is not None:
        yield
        return
    with recorded_sockets(_to_broker, stacks=True) as seen:
        yield
    if seen:
        first = seen[0]
        pytest.fail(
            f"{request.node.nodeid} connected to RabbitMQ at {first.target[0]}:"
            f"{first.target[1]} but is not marked rabbitmq; from:\n{first.stack}",
            pytrace=False,
        )


@pytest.fixture
def resource_alarm() -> Iterator[ResourceAlarm]:
    """A real disk alarm of the local RabbitMQ node (tests/broker_alarm.py), off until
    the test raises it; cleared at teardown whatever the test did. Broker-wide: it
    blocks every publisher on this machine while it is on."""
    alarm = ResourceAlarm()
    try:
        yield alarm
    finally:
        alarm.clear_sync()
