"""``[[sources]]`` options: one frozen dataclass per source kind, validated at load.

The keys of a ``[[sources]]`` table besides ``name``, ``kind`` and ``step`` build the kind's
options class below; ``agent.sources.registry`` says which class belongs to which kind.
"""

from __future__ import annotations

import dataclasses
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass

from agent.config_loader import check, topic_filter_problem

_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
MAX_MAPPED_VALUES = 64


# the kernel pins a live-ring buffer in RAM: 256 MiB is far past a gateway's need (8 MiB)
MAX_BUFFER_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class PcapOptions:
    """``kind = "pcap"``: replay a pcap/pcapng file, as fast as possible or paced by timestamps."""

    path: str
    realtime: bool = False
    loop: bool = False
    speed: float = 1.0  # with realtime: capture seconds per wall second (a demo replays at 15)

    def __post_init__(self) -> None:
        check(self.path != "", "path", "must not be empty")
        check(0 < self.speed <= 10_000, "speed", f"must be in (0, 10000], got {self.speed}")


@dataclass(frozen=True)
class LiveOptions:
    """``kind = "live"``: an AF_PACKET raw socket on one interface (Linux, CAP_NET_RAW)."""

    interface: str
    promiscuous: bool = False
    batch_frames: int = 4096
    batch_timeout: float = 0.05
    buffer_bytes: int = 8 * 1024 * 1024

    def __post_init__(self) -> None:
        check(
            0 < len(self.interface) < 16 and "/" not in self.interface,
            "interface",
            f"must be an interface name (1..15 characters), got {self.interface!r}",
        )
        check(
            1 <= self.batch_frames <= 1_000_000,
            "batch_frames",
            f"must be 1..1000000, got {self.batch_frames}",
        )
        check(
            0 < self.batch_timeout <= 10,
            "batch_timeout",
            f"must be in (0, 10] seconds, got {self.batch_timeout}",
        )
        check(
            65536 <= self.buffer_bytes <= MAX_BUFFER_BYTES,
            "buffer_bytes",
            f"must be 65536..{MAX_BUFFER_BYTES}, got {self.buffer_bytes}",
        )


@dataclass(frozen=True)
class SensorTopic:
    """One MQTT topic feeding one sensor: the payload is a number, or ``field`` of a JSON object."""

    topic: str
    sensor: str
    field: str = ""
    # exact payload texts (or JSON strings / true / false) that stand for a number
    values: Mapping[str, float] = dataclasses.field(
        default_factory=lambda: types.MappingProxyType({}), hash=False
    )

    def __post_init__(self) -> None:
        problem = topic_filter_problem(self.topic)
        check(problem == "", "topic", f"{problem} (an MQTT topic filter), got {self.topic[:40]!r}")
        check(
            len(self.values) <= MAX_MAPPED_VALUES,
            "values",
            f"at most {MAX_MAPPED_VALUES} entries, got {len(self.values)}",
        )
        from agent.features.telemetry import MAX_READING

        for text, number in self.values.items():
            check(
                0 < len(text) <= 64 and text == text.strip(),
                f"values.{text}",
                "a mapped text is 1..64 characters without surrounding spaces",
            )
            check(
                abs(number) <= MAX_READING,
                f"values.{text}",
                f"must be within ±{MAX_READING:g}, got {number}",
            )
        check(
            _NAME.fullmatch(self.sensor) is not None,
            "sensor",
            f"must be 1..64 characters of [A-Za-z0-9._-], got {self.sensor!r}",
        )


@dataclass(frozen=True)
class MqttSensorsOptions:
    """``kind = "mqtt-sensors"``: readings from topics on a (local) broker."""

    topics: tuple[SensorTopic, ...]
    host: str = ""
    port: int = 0

    def __post_init__(self) -> None:
        check(len(self.topics) > 0, "topics", "must list at least one topic")
        check(
            0 <= self.port <= 65535, "port", f"must be 0..65535 (0: [mqtt].port), got {self.port}"
        )
        names = [t.sensor for t in self.topics]
        check(len(set(names)) == len(names), "topics", f"sensor names must be unique: {names}")

    @property
    def sensors(self) -> tuple[str, ...]:
        """Sensor names in the order they were configured (the feature columns' order)."""
        return tuple(t.sensor for t in self.topics)


@dataclass(frozen=True)
class CsvOptions:
    """``kind = "csv"``: replay sensor readings from a CSV file (one row per reading time)."""

    path: str
    sensors: tuple[str, ...]
    timestamp: str = "timestamp"
    realtime: bool = False
    speed: float = 1.0  # with realtime: recorded seconds per wall second

    def __post_init__(self) -> None:
        check(self.path != "", "path", "must not be empty")
        check(0 < self.speed <= 10_000, "speed", f"must be in (0, 10000], got {self.speed}")
        check(len(self.sensors) > 0, "sensors", "must list at least one column")
        check(
            self.timestamp not in self.sensors,
            "timestamp",
            f"the timestamp column {self.timestamp!r} cannot also be a sensor",
        )


@dataclass(frozen=True)
class HostOptions:
    """``kind = "host"``: psutil metrics of the gateway itself, one snapshot per time step."""


SourceOptions = PcapOptions | LiveOptions | MqttSensorsOptions | CsvOptions | HostOptions
