"""Fixtures for the monitor tests: the embedded amqtt broker and a fake gateway.

The real Mosquitto (``mosquitto``) comes from tests/conftest.py.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator

import pytest

from console.embedded_broker import EmbeddedBroker
from tests.broker import Broker
from tests.monitor.gateway import FakeGateway


@pytest.fixture
def embedded() -> Iterator[EmbeddedBroker]:
    """The demo's in-process amqtt broker."""
    with EmbeddedBroker() as broker:
        yield broker


@pytest.fixture(params=["mosquitto", "amqtt"])
def broker_address(request: pytest.FixtureRequest) -> tuple[str, int]:
    """(host, port) of each kind of broker the monitor must work with."""
    if request.param == "mosquitto":
        broker: Broker | EmbeddedBroker = request.getfixturevalue("mosquitto")
    else:
        broker = request.getfixturevalue("embedded")
    return broker.host, broker.port


@pytest.fixture
def gateways() -> Iterator[Callable[..., FakeGateway]]:
    """Make fake gateways (``gateways(host, port, device=...)``); closed at teardown."""
    made: list[FakeGateway] = []

    def make(host: str, port: int, device: str = "gw-1") -> FakeGateway:
        gateway = FakeGateway(host, port, device)
        made.append(gateway)
        return gateway

    yield make
    for gateway in made:
        gateway.close()


class _SubscribedSignal(logging.Handler):
    """Sets an Event when the monitor logs that its SUBACK arrived."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("monitor: subscribed"):
            self.event.set()


@pytest.fixture
def monitor_subscribed() -> Iterator[threading.Event]:
    """Set once a monitor under test has its subscriptions (non-retained messages reach it)."""
    monitor_logger = logging.getLogger("console.monitor_client")
    signal = _SubscribedSignal()
    previous = monitor_logger.level
    monitor_logger.setLevel(logging.DEBUG)
    monitor_logger.addHandler(signal)
    yield signal.event
    monitor_logger.removeHandler(signal)
    monitor_logger.setLevel(previous)


@pytest.fixture
def embedded_url(embedded: EmbeddedBroker) -> str:
    """``mqtt://127.0.0.1:<port>`` of the embedded broker."""
    return embedded.url
