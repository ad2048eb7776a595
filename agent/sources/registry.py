"""Every source kind, in one table: where its class lives and where its options class lives.

Both are ``"module:attribute"`` paths imported on first use, so parsing a config loads only the
options of the kinds it names and running the agent loads only the sources it opens (an unused
source's dependencies, paho or psutil, never load). A new source is its own module (the class,
and its options dataclass if it likes) plus one line here.

This module imports nothing from the agent: ``agent.config`` reads it while it is being built.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SourceKind:
    """One registry entry: the source class and its ``[[sources]]`` options class."""

    factory: str  # "module:Class" built with (SourceConfig, AgentConfig)
    options: str  # "module:Class", a frozen dataclass of the table's other keys


SOURCE_KINDS: dict[str, SourceKind] = {
    "csv": SourceKind(
        "agent.sources.sensors_csv:CsvSensorSource", "agent.config_sources:CsvOptions"
    ),
    "host": SourceKind("agent.sources.host:HostSource", "agent.config_sources:HostOptions"),
    "live": SourceKind("agent.sources.live:LiveSource", "agent.config_sources:LiveOptions"),
    # the same options as "live"; frames come from a PACKET_MMAP ring
    "live-ring": SourceKind(
        "agent.sources.live_ring:RingSource", "agent.config_sources:LiveOptions"
    ),
    "mqtt-sensors": SourceKind(
        "agent.sources.sensors_mqtt:MqttSensorSource", "agent.config_sources:MqttSensorsOptions"
    ),
    "pcap": SourceKind("agent.sources.pcap:PcapSource", "agent.config_sources:PcapOptions"),
}


def resolve(target: str) -> Any:
    """The attribute a ``"module:attribute"`` path names (imports the module)."""
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def kinds() -> str:
    """The valid kinds, comma-separated, for error messages."""
    return ", ".join(sorted(SOURCE_KINDS))


def options_class(kind: str) -> type[Any]:
    """The options dataclass of a registered ``kind`` (KeyError for an unknown one)."""
    cls: type[Any] = resolve(SOURCE_KINDS[kind].options)
    return cls
