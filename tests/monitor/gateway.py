"""A fake gateway for monitor tests: a paho client that speaks the agent's MQTT contract."""

from __future__ import annotations

import json
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


class FakeGateway:
    """Publishes status / events / stats / model like ``agent/report/mqtt.py`` does."""

    def __init__(self, host: str, port: int, device: str = "gw-1", prefix: str = "iotids") -> None:
        self.base = f"{prefix}/{device}"
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"fake-{device}", protocol=mqtt.MQTTv311
        )
        self.client.will_set(f"{self.base}/status", b"offline", qos=1, retain=True)
        self.client.connect(host, port, keepalive=5)
        self.client.loop_start()

    def publish(self, kind: str, payload: bytes, retain: bool = False) -> None:
        """Publish at QoS 1 and wait for the broker's PUBACK."""
        info = self.client.publish(f"{self.base}/{kind}", payload, qos=1, retain=retain)
        info.wait_for_publish(5)
        assert info.is_published()

    def status(self, value: str) -> None:
        """The retained availability string."""
        self.publish("status", value.encode(), retain=True)

    def event(self, message_id: str, phase: str, detection: str, **fields: Any) -> None:
        """One ``iotids.event/1`` message."""
        body = {
            "schema": "iotids.event/1",
            "id": message_id,
            "type": phase,
            "detection": detection,
            "time": time.time(),
            **fields,
        }
        self.publish("events", json.dumps(body).encode())

    def stats(self, **fields: Any) -> None:
        """One ``iotids.stats/1`` message."""
        body = {"schema": "iotids.stats/1", "time": time.time(), **fields}
        self.publish("stats", json.dumps(body).encode())

    def model(self, bundle_id: str, result: str = "activated", reason: str = "") -> None:
        """The retained ``iotids.model/1`` message."""
        body = {
            "schema": "iotids.model/1",
            "bundle_id": bundle_id,
            "feature_set": "traffic-v1",
            "last_update": {"result": result, "reason": reason, "time": time.time()},
        }
        self.publish("model", json.dumps(body).encode(), retain=True)

    def crash(self) -> None:
        """Drop the TCP connection without DISCONNECT: the broker publishes the last will."""
        self.client.loop_stop()
        sock = self.client.socket()
        assert sock is not None
        sock.close()

    def close(self) -> None:
        """A clean goodbye (no will)."""
        self.client.disconnect()
        self.client.loop_stop()
