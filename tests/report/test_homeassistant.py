"""Home Assistant discovery: the config payloads, and the re-announce when HA comes back."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from agent.config import HomeAssistantConfig
from agent.report.homeassistant import discovery_messages, node_id
from tests.broker import Broker, Probe
from tests.report.conftest import SinkFactory, sink_config


def test_discovery_announces_four_entities_with_availability() -> None:
    messages = dict(discovery_messages("gw.kitchen-1", "iotids", "homeassistant"))
    assert set(messages) == {
        "homeassistant/binary_sensor/gw_kitchen-1/intrusion/config",
        "homeassistant/sensor/gw_kitchen-1/last_attack/config",
        "homeassistant/sensor/gw_kitchen-1/packets_per_s/config",
        "homeassistant/sensor/gw_kitchen-1/active_model/config",
    }
    configs = {topic.split("/")[-2]: json.loads(p) for topic, p in messages.items()}
    for name, config in configs.items():
        assert config["availability_topic"] == "iotids/gw.kitchen-1/status"
        assert (config["payload_available"], config["payload_not_available"]) == (
            "online",
            "offline",
        )
        assert config["unique_id"] == f"iotids_gw_kitchen-1_{name}"
        assert config["device"]["identifiers"] == ["iotids_gw_kitchen-1"]
    intrusion = configs["intrusion"]
    assert intrusion["device_class"] == "problem"
    assert intrusion["state_topic"] == "iotids/gw.kitchen-1/events"
    assert "active_events" in intrusion["value_template"]
    assert configs["packets_per_s"]["state_topic"] == "iotids/gw.kitchen-1/stats"
    assert configs["active_model"]["state_topic"] == "iotids/gw.kitchen-1/model"
    # the family first: what an operator acts on
    assert configs["last_attack"]["value_template"] == (
        "{{ value_json.category }} ({{ value_json.label }})"
    )


def test_node_id_keeps_only_what_home_assistant_accepts() -> None:
    assert node_id("gw-1_a") == "gw-1_a"
    assert node_id("gw.lab.2") == "gw_lab_2"


@pytest.mark.broker
def test_reannounces_when_home_assistant_comes_online(
    broker: Callable[..., Broker], sinks: SinkFactory
) -> None:
    mosq = broker()
    with Probe(mosq, ["ha/#"], client_id="home-assistant") as hass:
        config = sink_config(mosq, homeassistant=HomeAssistantConfig(discovery_prefix="ha"))
        sink, _ = sinks(config, "gw-1")
        sink.start()
        first = [hass.wait_for(lambda m: m.topic.endswith("/config")) for _ in range(4)]
        assert all(m is not None and m.qos == 1 for m in first)
        hass.publish("ha/status", b"offline")
        assert hass.wait_for(lambda m: m.topic.endswith("/config"), 1) is None
        hass.publish("ha/status", b"online")  # Home Assistant restarted
        again = [hass.wait_for(lambda m: m.topic.endswith("/config")) for _ in range(4)]
    assert {m.topic for m in again if m} == {m.topic for m in first if m}
    # retained, so a Home Assistant that starts later finds them too
    with Probe(mosq, ["ha/+/gw-1/+/config"], client_id="late") as late:
        retained = [late.wait_for(lambda m: m.retain, 5) for _ in range(4)]
    assert all(retained)


@pytest.mark.broker
def test_discovery_can_be_turned_off(broker: Callable[..., Broker], sinks: SinkFactory) -> None:
    mosq = broker()
    with Probe(mosq, ["homeassistant/#", "iotids/gw-1/status"], client_id="hass") as hass:
        config = sink_config(mosq, homeassistant=HomeAssistantConfig(enabled=False))
        sink, _ = sinks(config, "gw-1")
        sink.start()
        assert hass.wait_for(lambda m: m.payload == b"online") is not None
        assert hass.wait_for(lambda m: m.topic.startswith("homeassistant/"), 0.5) is None
