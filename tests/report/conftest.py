"""Fixtures for the reporting tests: sink configurations (brokers come from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.config import MqttConfig
from agent.report.mqtt import MqttSink
from agent.report.outbox import Outbox
from tests.broker import Broker


def sink_config(broker: Broker, **overrides: Any) -> MqttConfig:
    """An MqttConfig for ``broker`` with quick backoff, suitable for tests."""
    values: dict[str, Any] = {
        "host": broker.host,
        "port": broker.port,
        "keepalive": 5,
        "backoff_min": 1.0,
        "backoff_max": 1.0,
        "replay_rate": 500.0,
        "username_env": "IOTIDS_TEST_NO_USER",
        "password_env": "IOTIDS_TEST_NO_PASSWORD",
        "credentials_dir_env": "IOTIDS_TEST_NO_CREDENTIALS",
    }
    values.update(overrides)
    return MqttConfig(**values)


SinkFactory = Callable[..., tuple[MqttSink, Outbox]]


@pytest.fixture
def sinks(tmp_path: Path) -> Iterator[SinkFactory]:
    """Build MqttSinks, each with its own outbox (``sinks(config, device)``); closed at teardown."""
    made: list[tuple[MqttSink, Outbox]] = []

    def make(
        config: MqttConfig,
        device: str = "gw-1",
        *,
        on_model_set: Callable[[bytes], None] | None = None,
        outbox_path: Path | None = None,
    ) -> tuple[MqttSink, Outbox]:
        path = outbox_path or tmp_path / f"outbox-{len(made)}.sqlite"
        box = Outbox(path, max_messages=10_000, max_bytes=10_000_000)
        sink = MqttSink(config, device, box, on_model_set=on_model_set)
        made.append((sink, box))
        return sink, box

    yield make
    for sink, box in made:
        sink.close()
        box.close()
