"""Home Assistant MQTT discovery for one gateway (issue 7).

Each gateway announces four entities, all retained at QoS 1 under
``<discovery_prefix>/<component>/<node>/<object>/config``, where ``<node>`` is the device id with
any character outside ``[A-Za-z0-9_-]`` replaced by ``_`` (Home Assistant's rule for node ids):

* ``binary_sensor/<node>/intrusion`` — device class ``problem``; ``ON`` while a detection is
  active, read from ``active_events`` in the events payload.
* ``sensor/<node>/last_attack`` — the attack family (``category``) of the last detection event,
  then its model ``label`` in parentheses.
* ``sensor/<node>/packets_per_s`` — ``packets_per_s`` from the stats payload (state class
  ``measurement``, unit ``packets/s``).
* ``sensor/<node>/active_model`` — ``bundle_id`` from the retained model payload.

Every config carries ``availability_topic`` = ``<prefix>/<device>/status`` with
``payload_available`` ``online`` / ``payload_not_available`` ``offline`` (the agent's last will),
a ``unique_id`` ``iotids_<node>_<object>`` and a shared ``device`` block
(``identifiers: ["iotids_<node>"]``, name, manufacturer, model), so Home Assistant groups them
under one device. The agent re-announces when ``<discovery_prefix>/status`` says ``online``
(Home Assistant restarted and may have lost non-retained state).
"""

from __future__ import annotations

import json
import re
from typing import Final

_NODE_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_-]")
_INTRUSION_TEMPLATE: Final = "{{ 'ON' if (value_json.active_events | int(0)) > 0 else 'OFF' }}"


def node_id(device_id: str) -> str:
    """The Home Assistant node id for a device id (HA allows only ``[A-Za-z0-9_-]``)."""
    return _NODE_UNSAFE.sub("_", device_id)


def birth_topic(discovery_prefix: str) -> str:
    """Where Home Assistant announces ``online`` after it (re)starts."""
    return f"{discovery_prefix}/status"


def discovery_messages(
    device_id: str, topic_prefix: str, discovery_prefix: str
) -> list[tuple[str, bytes]]:
    """The retained (topic, JSON payload) pairs that announce one gateway's entities."""
    node = node_id(device_id)
    base = f"{topic_prefix}/{device_id}"
    common: dict[str, object] = {
        "availability_topic": f"{base}/status",
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": {
            "identifiers": [f"iotids_{node}"],
            "name": f"iotids {device_id}",
            "manufacturer": "iotids",
            "model": "iotids gateway agent",
        },
    }
    entities: list[tuple[str, str, dict[str, object]]] = [
        (
            "binary_sensor",
            "intrusion",
            {
                "name": "Intrusion",
                "device_class": "problem",
                "state_topic": f"{base}/events",
                "value_template": _INTRUSION_TEMPLATE,
            },
        ),
        (
            "sensor",
            "last_attack",
            {
                "name": "Last attack",
                "icon": "mdi:shield-alert",
                "state_topic": f"{base}/events",
                "value_template": "{{ value_json.category }} ({{ value_json.label }})",
            },
        ),
        (
            "sensor",
            "packets_per_s",
            {
                "name": "Packets per second",
                "state_topic": f"{base}/stats",
                "value_template": "{{ value_json.packets_per_s }}",
                "unit_of_measurement": "packets/s",
                "state_class": "measurement",
            },
        ),
        (
            "sensor",
            "active_model",
            {
                "name": "Active model",
                "icon": "mdi:brain",
                "state_topic": f"{base}/model",
                "value_template": "{{ value_json.bundle_id }}",
            },
        ),
    ]
    messages: list[tuple[str, bytes]] = []
    for component, obj, fields in entities:
        payload = {**fields, "unique_id": f"iotids_{node}_{obj}", **common}
        topic = f"{discovery_prefix}/{component}/{node}/{obj}/config"
        messages.append((topic, json.dumps(payload, sort_keys=True).encode()))
    return messages
