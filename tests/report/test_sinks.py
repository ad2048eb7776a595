"""The sink contract without a broker: the memory fake, credentials, never raising."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from agent.config import ConfigError, MqttConfig
from agent.contract import Topics
from agent.mqtt_client import resolve_credentials
from agent.report import Sink
from agent.report.memory import MemorySink
from agent.report.mqtt import MqttSink
from agent.report.outbox import Outbox


def _feed(sink: Sink) -> None:
    sink.start()
    sink.publish_event({"type": "new", "label": "scan"})
    sink.publish_stats({"packets_per_s": 10.0})
    sink.publish_model({"bundle_id": "b1"})
    sink.close()


def test_memory_sink_records_copies_in_order() -> None:
    sink = MemorySink()
    _feed(sink)
    event: dict[str, object] = {"type": "end", "label": "scan"}
    sink.publish_event(event)
    event["label"] = "changed later"
    assert sink.started
    assert sink.closed
    assert sink.events == [{"type": "new", "label": "scan"}, {"type": "end", "label": "scan"}]
    assert sink.stats == [{"packets_per_s": 10.0}]
    assert sink.models == [{"bundle_id": "b1"}]


def test_mqtt_sink_queues_without_a_broker(tmp_path: Path) -> None:
    """publish_* only touch the outbox: nothing listens on the port, nothing blocks or raises."""
    box = Outbox(tmp_path / "o.sqlite", 100, 100_000)
    sink: Sink = MqttSink(MqttConfig(host="127.0.0.1", port=1), "gw-9", box)  # mypy: a Sink
    sink.publish_event({"type": "new", "detection": "d1"})
    sink.publish_event({"type": "update", "detection": "d1"})
    sink.publish_event({"type": "end", "detection": "d1"})
    sink.publish_stats({"packets_per_s": 1.0})
    rows = box.peek(10)
    # one retained state follows the events; each new one replaced the one still queued
    assert [r.kind for r in rows] == ["event_new", "event_update", "event_end", "state", "stats"]
    assert [json.loads(r.payload)["active_events"] for r in rows[:4]] == [1, 1, 0, 0]
    assert rows[0].topic == "iotids/gw-9/events"
    assert (rows[3].topic, rows[3].retain) == ("iotids/gw-9/state", True)
    assert json.loads(rows[3].payload)["last_attack"]["type"] == "end"
    assert (rows[0].qos, rows[4].qos) == (1, 0)
    sink.close()
    box.close()


def test_publish_never_raises(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    box = Outbox(tmp_path / "o.sqlite", 100, 100_000)
    sink = MqttSink(MqttConfig(), "gw-9", box)
    circular: dict[str, object] = {"type": "new"}
    circular["self"] = circular
    with caplog.at_level(logging.ERROR):
        sink.publish_event(circular)  # not JSON
        box.close()  # a broken disk looks like this to the sink
        sink.publish_event({"type": "new"})
        sink.publish_stats({"packets_per_s": 1.0})
    # the circular event; then, disk gone, the stats; the event and the state after it wait in
    # memory for the disk (one line says so)
    assert sink.failures == 2
    lines = [r.getMessage() for r in caplog.records]
    assert sum("could not encode a event_new" in line for line in lines) == 1
    assert sum("holding messages in memory" in line for line in lines) == 1
    assert sum("could not queue a stats" in line for line in lines) == 1


def test_credentials_directory_wins_over_environment(tmp_path: Path) -> None:
    config = MqttConfig()
    env = {"IOTIDS_MQTT_USERNAME": "env-user", "IOTIDS_MQTT_PASSWORD": "env-pass"}
    assert resolve_credentials(config, env) == ("env-user", "env-pass")
    (tmp_path / "mqtt-password").write_text("file-pass\n")
    env["CREDENTIALS_DIRECTORY"] = str(tmp_path)
    assert resolve_credentials(config, env) == ("env-user", "file-pass")
    (tmp_path / "mqtt-username").write_text("file-user")
    assert resolve_credentials(config, env) == ("file-user", "file-pass")
    assert resolve_credentials(config, {}) == (None, None)
    (tmp_path / "mqtt-username").write_bytes(b"\xff\xfeuser")  # not text: one line, exit 2
    with pytest.raises(ConfigError, match=r"credentials: .*mqtt-username: not UTF-8 text"):
        resolve_credentials(config, env)


def test_topics_follow_the_prefix() -> None:
    topics = Topics.for_device("site/a", "gw-2")
    assert topics.status == "site/a/gw-2/status"
    assert topics.model_set == "site/a/gw-2/model/set"
