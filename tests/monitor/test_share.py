"""Two monitors in one MQTT 5 shared-subscription group split a gateway's events on Mosquitto."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from agent.broker_url import parse_broker_url
from agent.cli import main
from console.monitor_client import follow
from console.monitor_state import Fleet
from tests.broker import Broker
from tests.monitor.gateway import FakeGateway

pytestmark = pytest.mark.broker

EVENTS = 40


class _Subscriptions(logging.Handler):
    """Counts the monitors whose SUBACK arrived."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0
        self.changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("monitor: subscribed"):
            with self.changed:
                self.count += 1
                self.changed.notify_all()

    def wait_for(self, count: int, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.count >= count, timeout)


@pytest.fixture
def subscriptions() -> Iterator[_Subscriptions]:
    handler = _Subscriptions()
    monitor_logger = logging.getLogger("console.monitor_client")
    previous = monitor_logger.level
    monitor_logger.setLevel(logging.DEBUG)
    monitor_logger.addHandler(handler)
    yield handler
    monitor_logger.removeHandler(handler)
    monitor_logger.setLevel(previous)


def test_each_event_reaches_exactly_one_monitor_of_a_share_group(
    mosquitto: Broker,
    gateways: Callable[..., FakeGateway],
    subscriptions: _Subscriptions,
) -> None:
    url = parse_broker_url(f"mqtt://{mosquitto.host}:{mosquitto.port}")
    gateway = gateways(url.host, url.port, device="gw-share")
    gateway.status("online")
    fleets = [Fleet(recent=EVENTS), Fleet(recent=EVENTS)]
    stop = threading.Event()
    errors: list[BaseException] = []

    def watch(fleet: Fleet) -> None:
        try:
            follow(url, fleet, stop=stop, share="ops")
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=watch, args=(f,), name="share-monitor") for f in fleets]
    for thread in threads:
        thread.start()
    try:
        assert subscriptions.wait_for(len(fleets), 10), "the monitors never subscribed"
        for n in range(EVENTS):
            gateway.event(f"e-{n}", "new", f"d-{n}", label="syn_flood", category="ddos")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and sum(_events(f) for f in fleets) < EVENTS:
            time.sleep(0.05)
        time.sleep(0.3)  # a copy delivered to both would arrive by now
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    assert not errors
    seen = [_detections(f) for f in fleets]
    assert seen[0] | seen[1] == {f"d-{n}" for n in range(EVENTS)}
    assert not seen[0] & seen[1], "an event reached both members of the group"
    assert all(seen), "one member got nothing: the group did not split the stream"
    assert sum(_events(f) for f in fleets) == EVENTS
    # Status is retained and a broker never hands retained messages to a shared subscription:
    # each monitor subscribes to it directly, so both know the gateway is online.
    assert all(f.gateways["gw-share"].status == "online" for f in fleets)


def _events(fleet: Fleet) -> int:
    gateway = fleet.gateways.get("gw-share")
    return 0 if gateway is None else gateway.events


def _detections(fleet: Fleet) -> set[str]:
    gateway = fleet.gateways.get("gw-share")
    return set() if gateway is None else set(gateway.recent)


@pytest.mark.slow
def test_once_needs_no_timeout(
    mosquitto: Broker,
    gateways: Callable[..., FakeGateway],
    capsys: pytest.CaptureFixture[str],
) -> None:
    gateways(mosquitto.host, mosquitto.port, device="gw-once").status("online")
    started = time.monotonic()
    assert main(["monitor", "--broker", f"mqtt://{mosquitto.host}:{mosquitto.port}", "--once"]) == 0
    assert 4.0 <= time.monotonic() - started < 30.0
    assert "gw-once" in capsys.readouterr().out


@pytest.mark.parametrize("group", ["a/b", "a+", "#", ""])
def test_share_group_must_be_plain(group: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["monitor", "--broker", "mqtt://127.0.0.1:1", "--share", group, "--once"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"iotids monitor: --share must be a plain group name, got {group!r}"
    )
