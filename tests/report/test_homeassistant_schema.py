"""The discovery payloads against Home Assistant's own MQTT discovery schema, key by key.

Home Assistant needs Python 3.13, so its schemas cannot be imported here; the keys, required
fields and value rules below are transcribed from home-assistant/core
``homeassistant/components/mqtt/schemas.py`` (``MQTT_ENTITY_COMMON_SCHEMA``, the availability,
device and origin schemas), ``config.py`` (``MQTT_RO_SCHEMA``), ``sensor.py`` and
``binary_sensor.py``. A key HA does not know would be refused (its platform schemas allow no
extra keys), so every key is checked, not only the ones we rely on.
"""

from __future__ import annotations

import json
import re

from agent.report.homeassistant import discovery_messages

AVAILABILITY = {"availability_topic", "availability_template", "payload_available"}
AVAILABILITY |= {"payload_not_available", "availability", "availability_mode"}
COMMON = AVAILABILITY | {
    "device",
    "entity_picture",
    "origin",
    "enabled_by_default",
    "entity_category",
    "icon",
    "json_attributes_topic",
    "json_attributes_template",
    "default_entity_id",
    "object_id",
    "message_expiry_interval",
    "unique_id",
    "visible_by_default",
}
READ_ONLY = {"state_topic", "value_template", "qos", "encoding"}
PLATFORM = {
    "sensor": COMMON
    | READ_ONLY
    | {
        "device_class",
        "expire_after",
        "force_update",
        "last_reset_value_template",
        "name",
        "options",
        "suggested_display_precision",
        "state_class",
        "unit_of_measurement",
    },
    "binary_sensor": COMMON
    | READ_ONLY
    | {
        "device_class",
        "expire_after",
        "force_update",
        "name",
        "off_delay",
        "payload_off",
        "payload_on",
    },
}
DEVICE = {"identifiers", "connections", "manufacturer", "model", "model_id", "name"}
DEVICE |= {"hw_version", "serial_number", "sw_version", "via_device", "suggested_area"}
DEVICE |= {"configuration_url"}
ORIGIN = {"name", "sw_version", "support_url"}
STATE_CLASSES = {"measurement", "measurement_angle", "total", "total_increasing"}
ICON = re.compile(r"^[a-z0-9-]+:[a-z0-9-]+$")
TOPIC_LEVEL = re.compile(r"^[A-Za-z0-9_-]+$")


def test_every_discovery_key_is_one_home_assistant_accepts() -> None:
    messages = discovery_messages("gw.01", "iotids", "homeassistant")
    assert len(messages) == 4
    for topic, raw in messages:
        prefix, component, node, obj, tail = topic.split("/")
        assert (prefix, tail) == ("homeassistant", "config")
        assert TOPIC_LEVEL.match(node), node
        assert TOPIC_LEVEL.match(obj), obj
        payload = json.loads(raw)
        unknown = set(payload) - PLATFORM[component]
        assert not unknown, (topic, unknown)
        assert set(payload["device"]) <= DEVICE
        assert payload["device"]["identifiers"], "a device needs an identifier"
        assert all(isinstance(v, str) for v in payload["device"]["identifiers"])
        assert set(payload["origin"]) <= ORIGIN
        assert isinstance(payload["origin"]["name"], str)  # required by HA
        assert "availability" not in payload or "availability_topic" not in payload  # exclusive
        for key in ("state_topic", "availability_topic", "json_attributes_topic"):
            if key in payload:
                assert payload[key].startswith("iotids/gw.01/"), (key, payload[key])
        if "icon" in payload:
            assert ICON.match(payload["icon"]), payload["icon"]
        if "state_class" in payload:
            assert payload["state_class"] in STATE_CLASSES
        if "entity_category" in payload:
            # HA refuses ``config`` for read-only entities (sensors): diagnostic only.
            assert payload["entity_category"] == "diagnostic"
        if "json_attributes_template" in payload:
            assert "json_attributes_topic" in payload


def test_the_detection_entities_read_the_retained_state() -> None:
    by_object = {
        topic.split("/")[3]: json.loads(raw)
        for topic, raw in discovery_messages("gw", "iotids", "homeassistant")
    }
    for obj in ("intrusion", "last_attack"):
        assert by_object[obj]["state_topic"] == "iotids/gw/state"
        assert by_object[obj]["json_attributes_topic"] == "iotids/gw/state"
        assert "entity_category" not in by_object[obj]  # primary entities, not diagnostics
    assert by_object["intrusion"]["device_class"] == "problem"
    for obj in ("packets_per_s", "active_model"):
        assert by_object[obj]["entity_category"] == "diagnostic"
