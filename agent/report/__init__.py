"""Sinks: where the agent's detections, health stats and model state go.

The app calls every sink through :class:`Sink`. ``publish_*`` never block on the network and
never raise: a failing sink is logged and counted and never holds up the others. The real sink
is :class:`agent.report.mqtt.MqttSink` (durable outbox + MQTT); tests and offline replays use
:class:`agent.report.memory.MemorySink`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class Sink(Protocol):
    """What the agent reports through; the MQTT contract is documented in ``agent.report.mqtt``."""

    def start(self) -> None:
        """Begin delivering (connect, start threads); called once before any publish."""

    def publish_event(self, event: Mapping[str, object]) -> None:
        """A detection's ``new`` / ``update`` / ``end``: queued durably, must never be lost."""

    def publish_stats(self, stats: Mapping[str, object]) -> None:
        """One stats interval's health figures (may be dropped first under pressure)."""

    def publish_model(self, state: Mapping[str, object]) -> None:
        """The active model and the last update result (retained)."""

    def close(self) -> None:
        """Stop delivering and release resources; queued messages stay for the next start."""


__all__ = ["Sink"]
