"""Sensor telemetry from MQTT topics on the (local) broker: topic -> sensor, number or JSON field.

Messages arrive on paho's thread and only land in a bounded buffer; the source thread turns
them into telemetry-v1 steps as the wall clock passes each step's end. A payload that is not a
number (or lacks the configured JSON field) is skipped and counted by reason, never raised
(``agent.sources.sensors_payload``).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from agent.features.telemetry import TelemetryFeaturizer, sorted_distinct
from agent.sources import SourceStats, StepBatch, empty_batch
from agent.sources.sensors_payload import MAX_PAYLOAD_BYTES, PayloadError, reading_value

if TYPE_CHECKING:
    from agent.config import AgentConfig, MqttSensorsOptions, SensorTopic, SourceConfig

logger = logging.getLogger(__name__)

BUFFER = 100_000  # readings held between two reads; the oldest go first (and are counted)
# Fixed header, topic and properties of a PUBLISH, beside its payload (topics are <= 1 KiB).
MAX_PACKET_OVERHEAD = 4096
CLOCK_JUMP_NS = 2_000_000_000  # wall clock moving this much more (or less) than monotonic time


class MqttSensorSource:
    """Subscribes to the configured topics and steps their readings on the wall clock."""

    lossless = False
    finished = False

    def __init__(
        self,
        config: SourceConfig,
        agent: AgentConfig,
        *,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        from agent.config import MqttSensorsOptions

        options = config.options
        if not isinstance(options, MqttSensorsOptions):
            raise TypeError(f"{config.name}: mqtt-sensors source needs MqttSensorsOptions")
        self.name = config.name
        self.step = config.step_spec
        self.options: MqttSensorsOptions = options
        self._featurizer = TelemetryFeaturizer(options.sensors, self.step)
        self.feature_set = self._featurizer.feature_set
        self.stats = SourceStats()
        self._buffer: deque[tuple[int, int, float]] = deque(maxlen=BUFFER)
        self._lock = threading.Lock()
        self._clock = clock
        self._closing = False  # a disconnect we asked for is not worth a line
        self._last_clock = (clock(), time.monotonic_ns())
        self._client = self._connect(agent)

    def _connect(self, agent: AgentConfig) -> Any:
        from agent.mqtt_client import FailureLog, make_client, resolve_credentials, tls_context

        host = self.options.host or agent.mqtt.host
        port = self.options.port or agent.mqtt.port
        v5 = agent.mqtt.protocol == "5"
        # The report broker's TLS and credentials go only to that broker: to any other one they
        # would travel in clear text (and the agent's password to a broker that is not its own).
        same_broker = (host, port) == (agent.mqtt.host, agent.mqtt.port)
        tls = tls_context(agent.mqtt.tls) if same_broker and agent.mqtt.tls is not None else None
        username, password = resolve_credentials(agent.mqtt)
        if username and not (same_broker or _is_loopback(host)):
            logger.warning(
                "sensor source %s: not sending the [mqtt] credentials to %s (another broker)",
                self.name,
                host,
            )
            username = password = None
        client = make_client(
            f"iotids-{agent.agent.device_id}-sensors-{self.name}",
            protocol=agent.mqtt.protocol,
            username=username or None,
            password=password,
            tls=tls,
            backoff=(agent.mqtt.backoff_min, agent.mqtt.backoff_max),
        )
        # a broker away, a TLS handshake or credentials refused: one line each, never silence
        self._failures = FailureLog(logger, f"sensor source {self.name}")
        where = (host, port, agent.mqtt.backoff_max)
        client.on_connect = self._on_connect
        client.on_connect_fail = lambda _client, _userdata: self._failures.connect_failed(*where)
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.connect_async(
            host,
            port,
            keepalive=agent.mqtt.keepalive,
            properties=_connect_properties() if v5 else None,
        )
        client.loop_start()
        return client

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self._failures.say(f"broker refused the connection: {reason}")
            return
        if self._failures.connected():
            logger.warning("sensor source %s: connected again", self.name)
        client.subscribe([(t.topic, 1) for t in self.options.topics])
        logger.info("sensor source %s subscribed to %d topics", self.name, len(self.options.topics))

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if not self._closing:
            self._failures.say(f"lost the broker ({reason}); no readings until it is back")

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        # paho's network thread: an exception escaping here would end that thread for good
        # (every later reading lost while the agent still says online), so nothing may.
        try:
            self._dispatch(message.topic, message.payload)
        except Exception as exc:  # a bug, not a bad payload: count it, keep the thread
            self.stats.malformed["unexpected"] += 1
            logger.warning(
                "sensor source %s: message on %r skipped: %r", self.name, message.topic, exc
            )

    def _dispatch(self, topic_name: str, payload: bytes) -> None:
        import paho.mqtt.client as mqtt

        now = self._clock()
        for index, topic in enumerate(self.options.topics):
            if mqtt.topic_matches_sub(topic.topic, topic_name):
                self._accept(now, index, topic, payload)

    def _accept(self, now: int, index: int, topic: SensorTopic, payload: bytes) -> None:
        try:
            value = reading_value(payload, topic.field, topic.values)
        except PayloadError as exc:
            self.stats.malformed[exc.reason] += 1
            logger.debug("sensor %s: skipped payload %r (%s)", topic.sensor, payload[:40], exc)
            return
        with self._lock:
            if len(self._buffer) == self._buffer.maxlen:
                self.stats.drops += 1
            self._buffer.append((now, index, value))
        self.stats.readings += 1

    def read(self, timeout: float) -> StepBatch | None:
        """Steps finished by now, after waiting up to ``timeout`` for the next step's end."""
        size = self.step.size_ns
        now = self._clock()
        next_end = (now // size + 1) * size
        wait = (next_end - now) / 1e9
        time.sleep(max(min(wait, timeout), 0.0))
        self._check_clock()
        with self._lock:
            readings = list(self._buffer)
            self._buffer.clear()
        if readings:
            arr = np.asarray(readings, np.float64)
            ts = np.asarray([r[0] for r in readings], np.int64)
            for index in sorted_distinct(arr[:, 1]).astype(int).tolist():
                mine = arr[:, 1] == index
                self._featurizer.push(ts[mine], index, arr[mine, 2])
        steps = self._featurizer.advance(self._clock())
        self.stats.steps += len(steps)
        if not len(steps):
            return None if not readings else empty_batch(self.feature_set.width)
        return StepBatch(steps.start_ns, steps.values)

    def _check_clock(self) -> None:
        """Restart the steps when the wall clock jumps (NTP setting a Pi that has no RTC).

        Steps follow the wall clock from the first reading: after a jump forward the featurizer
        would build one step per interval of the jump at once (1970 -> now is 1.7e9 of them), and
        after a jump back it would drop every reading as late until the clock caught up.
        """
        wall, mono = self._clock(), time.monotonic_ns()
        last_wall, last_mono = self._last_clock
        self._last_clock = (wall, mono)
        jump = (wall - last_wall) - (mono - last_mono)
        if abs(jump) <= max(CLOCK_JUMP_NS, self.step.size_ns):
            return
        logger.warning(
            "sensor source %s: the clock jumped %+.1f s; steps restart from now",
            self.name,
            jump / 1e9,
        )
        self._featurizer = TelemetryFeaturizer(self.options.sensors, self.step)
        with self._lock:  # readings stamped on the old clock count as read now
            self._buffer = deque(((wall, i, v) for _, i, v in self._buffer), maxlen=BUFFER)

    def close(self) -> None:
        """Disconnect from the broker."""
        self._closing = True
        self._client.disconnect()
        self._client.loop_stop()


def _connect_properties() -> Any:
    """MQTT 5 lets a client refuse big messages before they are sent: the broker drops a PUBLISH
    larger than Maximum Packet Size for us, so a 200 MB payload never reaches this process."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.MaximumPacketSize = MAX_PAYLOAD_BYTES + MAX_PACKET_OVERHEAD
    return properties


def _is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (traffic that never leaves the gateway)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
