"""The demo's live view against the embedded broker: event lines, status, duplicates dropped."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from console.demo_view import LiveView, ViewError
from console.embedded_broker import EmbeddedBroker, free_port

T0 = 1_700_000_000.0


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as running:
        yield running


def _publisher(broker: EmbeddedBroker) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-gateway")
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def _wait(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.02)
    pytest.fail("timed out")


def test_view_prints_new_and_end_keeps_stats_and_drops_duplicates(broker: EmbeddedBroker) -> None:
    out = io.StringIO()
    view = LiveView(broker.host, broker.port, "gw-7", out=out)
    view.start()
    client = _publisher(broker)
    try:
        new = {
            "id": "e1",
            "type": "new",
            "detection": "d1",
            "label": "syn_flood",
            "source": "traffic",
            "start": T0 + 18,
            "score": 0.97,
            "time": time.time(),
        }
        update = {**new, "id": "e2", "type": "update"}
        end = {**new, "id": "e3", "type": "end", "end": T0 + 29, "score": 0.0}
        for payload in (new, new, update, end):  # QoS 1 may deliver twice
            client.publish("iotids/gw-7/events", json.dumps(payload), qos=1).wait_for_publish(5)
        stats = {
            "packets": 1234,
            "packets_per_s": 456.0,
            "latency_ms_p50": 0.02,
            "latency_ms_p99": 0.3,
            "rss_bytes": 80 * 2**20,
        }
        client.publish("iotids/gw-7/stats", json.dumps(stats)).wait_for_publish(5)
        client.publish("iotids/other/events", json.dumps({**new, "id": "x"}), qos=1)
        client.publish("iotids/gw-7/events", b"not json", qos=1).wait_for_publish(5)
        _wait(lambda: view.stats_count() == 1 and len(view.received_events()) == 3)
    finally:
        client.loop_stop()
        client.disconnect()
        view.close()
    assert [e["id"] for e in view.received_events()] == ["e1", "e2", "e3"]
    assert view.latest_stats() == stats
    lines = out.getvalue().splitlines()
    printed = [line.split()[1:4] for line in lines if "score" in line]
    assert printed == [["new", "traffic", "syn_flood"], ["end", "traffic", "syn_flood"]]
    assert any("1234 packets" in line and "456 packets/s" in line for line in lines)


def test_view_without_a_broker_says_so() -> None:
    view = LiveView("127.0.0.1", free_port(), "gw-7", out=io.StringIO())
    with pytest.raises(ViewError, match="no subscription"):
        view.start(timeout=1.0)
