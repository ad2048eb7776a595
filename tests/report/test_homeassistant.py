"""Home Assistant discovery: the config payloads, and the re-announce when HA comes back."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

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
        assert config["origin"]["name"] == "iotids"
        assert config["origin"]["sw_version"] == config["device"]["sw_version"]
    intrusion = configs["intrusion"]
    assert intrusion["device_class"] == "problem"
    # Retained state, not the events stream: a restarted Home Assistant reads the truth.
    for name in ("intrusion", "last_attack"):
        assert configs[name]["state_topic"] == "iotids/gw.kitchen-1/state"
        assert configs[name]["json_attributes_topic"] == "iotids/gw.kitchen-1/state"
        assert "entity_category" not in configs[name]
    assert "active_events" in intrusion["value_template"]
    assert configs["packets_per_s"]["state_topic"] == "iotids/gw.kitchen-1/stats"
    assert configs["active_model"]["state_topic"] == "iotids/gw.kitchen-1/model"
    for name in ("packets_per_s", "active_model"):
        assert configs[name]["entity_category"] == "diagnostic"


_OPEN = {
    "schema": "iotids.state/1",
    "active_events": 1,
    "detections": [{"detection": "d1", "label": "flood", "category": "flood", "score": 0.9}],
    "last_attack": {
        "detection": "d1",
        "label": "synflood",
        "category": "flood",
        "evidence": {"top_sources": [{"address": "10.0.0.9", "packets": 900}]},
    },
}
_CALM = {"schema": "iotids.state/1", "active_events": 0, "detections": [], "last_attack": None}


@pytest.mark.parametrize(
    ("state", "intrusion", "last", "attributes"),
    [
        (_OPEN, "ON", "flood (synflood)", _OPEN["last_attack"]),
        (
            {**_OPEN, "active_events": 0, "detections": []},
            "OFF",
            "flood (synflood)",
            _OPEN["last_attack"],
        ),
        (_CALM, "OFF", "none", {}),
    ],
    ids=["open", "ended", "never-attacked"],
)
def test_the_templates_give_home_assistant_the_state_and_the_evidence(
    state: dict[str, Any], intrusion: str, last: str, attributes: dict[str, Any]
) -> None:
    jinja2 = pytest.importorskip("jinja2", reason="renders HA's templates (the dev extra)")
    env = jinja2.Environment(autoescape=False)  # JSON, not HTML

    def render(config: dict[str, Any], key: str) -> str:
        return env.from_string(config[key]).render(value_json=state, value=json.dumps(state))

    configs = {
        topic.split("/")[-2]: json.loads(p)
        for topic, p in discovery_messages("gw-1", "iotids", "homeassistant")
    }
    assert render(configs["intrusion"], "value_template") == intrusion
    assert render(configs["last_attack"], "value_template") == last
    assert json.loads(render(configs["last_attack"], "json_attributes_template")) == attributes
    opened = json.loads(render(configs["intrusion"], "json_attributes_template"))
    assert opened == {"detections": state["detections"]}


def test_the_active_model_carries_its_site_calibration_as_attributes() -> None:
    jinja2 = pytest.importorskip("jinja2", reason="renders HA's templates (the dev extra)")
    env = jinja2.Environment(autoescape=False)
    configs = {
        topic.split("/")[-2]: json.loads(p)
        for topic, p in discovery_messages("gw-1", "iotids", "homeassistant")
    }
    model = configs["active_model"]
    assert model["json_attributes_topic"] == model["state_topic"] == "iotids/gw-1/model"
    template = env.from_string(model["json_attributes_template"])
    calibration = {
        "state": "calibrated",
        "thresholds": {"amp": 1.00390625},
        "start_quiet_windows": 10,
    }
    payload = {"bundle_id": "cnn-1", "calibration": calibration}
    assert json.loads(template.render(value_json=payload)) == calibration
    # a model message without it (an update's result) gives no attributes, not an error
    assert json.loads(template.render(value_json={"bundle_id": "cnn-2"})) == {}


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
