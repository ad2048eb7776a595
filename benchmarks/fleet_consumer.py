"""The fleet benchmark's consumer: one MQTT 5 client with a persistent session.

It only notes, per event id, when the first copy arrived (a copy seen again is counted as a
duplicate: QoS 1 is at-least-once), and counts stats messages. Its session outlives the
broker's restart (session expiry one hour, persistence on), so messages queued for it while
it was away are delivered after; anything missing afterwards is a loss on the way in.
"""

from __future__ import annotations

import json
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

PREFIX = "iotids"


class Consumer:
    """Receives every gateway's events and stats; thread-safe counters for the driver."""

    def __init__(self, host: str, port: int, client_id: str = "fleet-load-consumer") -> None:
        self.host, self.port = host, port
        self.first_seen: dict[str, float] = {}
        self.duplicates = 0
        self.stats = 0
        self.unreadable = 0
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self._client.reconnect_delay_set(1, 2)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    def start(self, timeout: float = 10.0) -> None:
        """Connect with a persistent session and wait for the subscription."""
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 3600
        self._client.connect_async(
            self.host, self.port, keepalive=10, clean_start=False, properties=properties
        )
        self._client.loop_start()
        if not self._subscribed.wait(timeout):
            raise TimeoutError("the fleet consumer got no SUBACK")

    def settle(self, expected: int, timeout: float) -> None:
        """Wait until ``expected`` distinct events arrived, or nothing new came for 3 s."""
        deadline = time.monotonic() + timeout
        last_count, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            with self._lock:
                count = len(self.first_seen)
            if count >= expected:
                return
            if count != last_count:
                last_count, last_change = count, time.monotonic()
            elif time.monotonic() - last_change > 3.0:
                return
            time.sleep(0.2)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if not reason.is_failure and not flags.session_present:
            client.subscribe([(f"{PREFIX}/+/events", 1), (f"{PREFIX}/+/stats", 1)])
        elif not reason.is_failure:
            self._subscribed.set()

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        now = time.time()
        if message.topic.endswith("/stats"):
            with self._lock:
                self.stats += 1
            return
        try:
            event_id = json.loads(message.payload)["id"]
        except (ValueError, KeyError, TypeError):
            with self._lock:
                self.unreadable += 1
            return
        with self._lock:
            if event_id in self.first_seen:
                self.duplicates += 1
            else:
                self.first_seen[str(event_id)] = now
