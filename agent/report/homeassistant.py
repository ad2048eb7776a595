"""Home Assistant MQTT discovery for one gateway.

Each gateway announces four entities, all retained at QoS 1 under
``<discovery_prefix>/<component>/<node>/<object>/config``, where ``<node>`` is the device id with
any character outside ``[A-Za-z0-9_-]`` replaced by ``_`` (Home Assistant's rule for node ids):

* ``binary_sensor/<node>/intrusion`` — device class ``problem``; ``ON`` while a detection is
  open, read from ``active_events`` in the retained state payload (``<prefix>/<device>/state``),
  so a Home Assistant that restarts reads the truth from the broker; the open detections are
  its attributes.
* ``sensor/<node>/last_attack`` — ``family (label)`` of the last detection, from the same retained
  state; that detection's summary (family, scores, evidence: top sources and ports) are its
  attributes.
* ``sensor/<node>/packets_per_s`` — ``packets_per_s`` from the stats payload (state class
  ``measurement``, unit ``packets/s``, entity category ``diagnostic``).
* ``sensor/<node>/active_model`` — ``bundle_id`` from the retained model payload (entity
  category ``diagnostic``); the site calibration in force (``state``, thresholds, a quiet
  stream start) are its attributes.

Every config carries ``availability_topic`` = ``<prefix>/<device>/status`` with
``payload_available`` ``online`` / ``payload_not_available`` ``offline`` (the agent's last will),
a ``unique_id`` ``iotids_<node>_<object>``, a shared ``device`` block
(``identifiers: ["iotids_<node>"]``, name, manufacturer, model, software version) and an
``origin`` (``name``, ``sw_version``), so Home Assistant groups them under one
device and says where they came from. The agent re-announces when ``<discovery_prefix>/status``
says ``online``. On a broker whose ACL keeps gateways out of the discovery prefix (the example in
``firmware_configs/mosquitto``), the operator publishes these same configs instead
(``iotids provision`` renders them).
"""

from __future__ import annotations

import json
import re
from typing import Final

from agent import __version__
from agent.contract import OFFLINE, ONLINE, Topics

_NODE_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_-]")
_INTRUSION_TEMPLATE: Final = "{{ 'ON' if (value_json.active_events | int(0)) > 0 else 'OFF' }}"
# The family first (what an operator acts on), then the model's own label.
_LAST_ATTACK_TEMPLATE: Final = (
    "{{ (value_json.last_attack.category ~ ' (' ~ value_json.last_attack.label ~ ')')"
    " if value_json.last_attack else 'none' }}"
)
_OPEN_ATTRIBUTES: Final = "{{ {'detections': value_json.detections} | tojson }}"
_LAST_ATTRIBUTES: Final = "{{ (value_json.last_attack or {}) | tojson }}"
# the site calibration in force (its thresholds: a label above 1 is silenced on this site)
_MODEL_ATTRIBUTES: Final = "{{ (value_json.calibration or {}) | tojson }}"


def node_id(device_id: str) -> str:
    """The Home Assistant node id for a device id (HA allows only ``[A-Za-z0-9_-]``)."""
    return _NODE_UNSAFE.sub("_", device_id)


def birth_topic(discovery_prefix: str) -> str:
    """Where Home Assistant announces ``online`` after it (re)starts."""
    return f"{discovery_prefix}/status"


def _entities(topics: Topics) -> list[tuple[str, str, dict[str, object]]]:
    """(component, object id, fields) of the four entities, reading the device's topics."""
    state = topics.state
    return [
        (
            "binary_sensor",
            "intrusion",
            {
                "name": "Intrusion",
                "device_class": "problem",
                "state_topic": state,
                "value_template": _INTRUSION_TEMPLATE,
                "json_attributes_topic": state,
                "json_attributes_template": _OPEN_ATTRIBUTES,
            },
        ),
        (
            "sensor",
            "last_attack",
            {
                "name": "Last attack",
                "icon": "mdi:shield-alert",
                "state_topic": state,
                "value_template": _LAST_ATTACK_TEMPLATE,
                "json_attributes_topic": state,
                "json_attributes_template": _LAST_ATTRIBUTES,
            },
        ),
        (
            "sensor",
            "packets_per_s",
            {
                "name": "Packets per second",
                "state_topic": topics.stats,
                "value_template": "{{ value_json.packets_per_s }}",
                "unit_of_measurement": "packets/s",
                "state_class": "measurement",
                "entity_category": "diagnostic",
            },
        ),
        (
            "sensor",
            "active_model",
            {
                "name": "Active model",
                "icon": "mdi:brain",
                "state_topic": topics.model,
                "value_template": "{{ value_json.bundle_id }}",
                "json_attributes_topic": topics.model,
                "json_attributes_template": _MODEL_ATTRIBUTES,
                "entity_category": "diagnostic",
            },
        ),
    ]


def discovery_messages(
    device_id: str, topic_prefix: str, discovery_prefix: str
) -> list[tuple[str, bytes]]:
    """The retained (topic, JSON payload) pairs that announce one gateway's entities."""
    node = node_id(device_id)
    topics = Topics.for_device(topic_prefix, device_id)
    common: dict[str, object] = {
        "availability_topic": topics.status,
        "payload_available": ONLINE.decode(),
        "payload_not_available": OFFLINE.decode(),
        "device": {
            "identifiers": [f"iotids_{node}"],
            "name": f"iotids {device_id}",
            "manufacturer": "iotids",
            "model": "iotids gateway agent",
            "sw_version": __version__,
        },
        "origin": {"name": "iotids", "sw_version": __version__},
    }
    messages: list[tuple[str, bytes]] = []
    for component, obj, fields in _entities(topics):
        payload = {**fields, "unique_id": f"iotids_{node}_{obj}", **common}
        topic = f"{discovery_prefix}/{component}/{node}/{obj}/config"
        messages.append((topic, json.dumps(payload, sort_keys=True).encode()))
    return messages
