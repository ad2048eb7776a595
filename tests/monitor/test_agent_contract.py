"""The monitor reads what the agent's real MQTT sink (agent/report/mqtt.py) publishes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.cli import main
from agent.config import HomeAssistantConfig, MqttConfig
from agent.report.mqtt import MqttSink
from agent.report.outbox import Outbox
from tests.broker import Broker

pytestmark = pytest.mark.broker


def _wait(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_monitor_follows_the_real_sink(
    mosquitto: Broker,
    tmp_path: Path,
    monitor_subscribed: threading.Event,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = MqttConfig(
        host=mosquitto.host,
        port=mosquitto.port,
        keepalive=5,
        replay_rate=500.0,
        stats_qos=1,
        username_env="IOTIDS_TEST_NO_USER",
        password_env="IOTIDS_TEST_NO_PASSWORD",
        credentials_dir_env="IOTIDS_TEST_NO_CREDENTIALS",
        homeassistant=HomeAssistantConfig(enabled=False),
    )
    outbox = Outbox(tmp_path / "outbox.sqlite", max_messages=1000, max_bytes=1_000_000)
    sink = MqttSink(config, "gw-real", outbox)
    sink.start()
    try:
        assert _wait(lambda: sink.connected), "the sink never connected"
        sink.publish_model({"bundle_id": "cnn-real", "feature_set": "traffic-v1"})
        assert _wait(lambda: outbox.depth() == 0)
        detection = {"detection": "d-1", "label": "syn_flood", "category": "ddos", "score": 0.9}

        def agent_reports() -> None:
            assert monitor_subscribed.wait(10)
            sink.publish_event({**detection, "id": "e-1", "type": "new", "start": time.time()})
            sink.publish_event({**detection, "id": "e-1", "type": "new"})  # an outbox replay
            sink.publish_event({**detection, "type": "update", "score": 0.95})
            sink.publish_stats({"packets_per_s": 321.0, "latency_ms_p50": 0.8})

        reporter = threading.Thread(target=agent_reports, name="agent-reports")
        reporter.start()
        url = f"mqtt://{mosquitto.host}:{mosquitto.port}"
        assert main(["monitor", "--broker", url, "--once", "--timeout", "2", "--json"]) == 0
        reporter.join(10)
    finally:
        sink.close()
        outbox.close()

    state = json.loads(capsys.readouterr().out)["gateways"]["gw-real"]
    assert state["status"] == "online"
    assert state["model"]["bundle_id"] == "cnn-real"
    assert [e["detection"] for e in state["active_events"]] == ["d-1"]
    assert state["active_events"][0]["score"] == pytest.approx(0.95)
    assert (state["events_received"], state["duplicates_dropped"]) == (2, 1)
    assert state["packets_per_s"] == pytest.approx(321.0)
    assert state["outbox_depth"] is not None
