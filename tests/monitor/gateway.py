"""A fake gateway for monitor tests: a paho client that speaks the agent's MQTT contract."""

from __future__ import annotations

import json
import time
from typing import Any

from agent.contract import EVENT_SCHEMA, MODEL_SCHEMA, OFFLINE, STATS_SCHEMA, Topics
from agent.mqtt_client import make_client


class FakeGateway:
    """Publishes status / events / stats / model as ``agent.contract`` defines them."""

    def __init__(self, host: str, port: int, device: str = "gw-1", prefix: str = "iotids") -> None:
        self.topics = Topics.for_device(prefix, device)
        self.client = make_client(f"fake-{device}", will=(self.topics.status, OFFLINE))
        self.client.connect(host, port, keepalive=5)
        self.client.loop_start()

    def publish(self, kind: str, payload: bytes, retain: bool = False) -> None:
        """Publish at QoS 1 and wait for the broker's PUBACK."""
        topic = getattr(self.topics, kind)
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(5)
        assert info.is_published()

    def status(self, value: str) -> None:
        """The retained availability string."""
        self.publish("status", value.encode(), retain=True)

    def event(self, message_id: str, phase: str, detection: str, **fields: Any) -> None:
        """One ``iotids.event/1`` message."""
        body = {
            "schema": EVENT_SCHEMA,
            "id": message_id,
            "type": phase,
            "detection": detection,
            "time": time.time(),
            **fields,
        }
        self.publish("events", json.dumps(body).encode())

    def stats(self, **fields: Any) -> None:
        """One ``iotids.stats/1`` message."""
        body = {"schema": STATS_SCHEMA, "time": time.time(), **fields}
        self.publish("stats", json.dumps(body).encode())

    def model(self, bundle_id: str, result: str = "activated", reason: str = "") -> None:
        """The retained ``iotids.model/1`` message."""
        body = {
            "schema": MODEL_SCHEMA,
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
