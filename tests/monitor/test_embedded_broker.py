"""The demo's in-process amqtt broker: starts, serves, stops, leaves nothing behind."""

from __future__ import annotations

import sys
import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from console.embedded_broker import EmbeddedBroker, EmbeddedBrokerError

pytestmark = pytest.mark.broker


def _round_trip(broker: EmbeddedBroker) -> bytes:
    """Publish a retained message and read it back through a second client."""
    received = threading.Event()
    payloads: list[bytes] = []

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        payloads.append(bytes(message.payload))
        received.set()

    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="pub")
    publisher.connect(broker.host, broker.port)
    publisher.loop_start()
    publisher.publish("iotids/gw/status", b"online", qos=1, retain=True).wait_for_publish(5)
    subscriber = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sub")
    subscriber.on_message = on_message
    subscriber.connect(broker.host, broker.port)
    subscriber.subscribe("iotids/+/status", qos=1)
    subscriber.loop_start()
    try:
        assert received.wait(5)
    finally:
        for client in (publisher, subscriber):
            client.disconnect()
            client.loop_stop()
    return payloads[0]


def test_starts_and_stops_cleanly_twice_in_a_row() -> None:
    before = set(threading.enumerate())
    ports = []
    for _ in range(2):
        with EmbeddedBroker() as broker:
            assert broker.running
            assert broker.url == f"mqtt://127.0.0.1:{broker.port}"
            assert _round_trip(broker) == b"online"
            ports.append(broker.port)
        assert not broker.running
        leftover = set(threading.enumerate()) - before
        assert leftover == set(), f"threads left behind: {leftover}"
    assert all(ports)
    broker.stop()  # a second stop is a no-op


@pytest.mark.allow_log_exception
def test_a_taken_port_is_a_clear_error(embedded: EmbeddedBroker) -> None:
    # amqtt logs its own bind failure with a traceback before raising.
    with pytest.raises(EmbeddedBrokerError, match=f"cannot listen on 127.0.0.1:{embedded.port}"):
        EmbeddedBroker(port=embedded.port).start()
    assert [t.name for t in threading.enumerate()].count("embedded-broker") == 1


def test_without_amqtt_the_error_names_the_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "amqtt.broker", None)  # what an install without it sees
    with pytest.raises(EmbeddedBrokerError, match=r"pip install 'iotids\[demo\]'"):
        EmbeddedBroker().start()
