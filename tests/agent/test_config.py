"""The configuration contract: one line naming the key path for every mistake."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.config import (
    AgentConfig,
    ConfigError,
    LiveOptions,
    MqttSensorsOptions,
    PcapOptions,
    load_config,
    parse_config,
)

GOOD = """
[agent]
device_id = "gw-1"
state_dir = "/tmp/iotids-state"

[mqtt]
host = "broker.local"
port = 8883
protocol = "5"

[mqtt.tls]
ca_file = "/etc/iotids/ca.pem"

[[sources]]
name = "lan"
kind = "live"
interface = "eth0"
promiscuous = true

[[sources]]
name = "plant"
kind = "mqtt-sensors"
step = "2s"
topics = [
    { topic = "plant/boiler/temp", sensor = "temp" },
    { topic = "plant/boiler/state", sensor = "pressure", field = "bar" },
]

[[models]]
name = "cnn"
bundle = "/var/lib/iotids/cnn.bundle"
source = "lan"
raise_k = 1
raise_n = 1
"""


def _base(**tables: Any) -> dict[str, Any]:
    return {"agent": {"device_id": "gw-1"}, **tables}


def test_a_full_file_loads_into_frozen_dataclasses(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(GOOD)
    config = load_config(path)
    assert isinstance(config, AgentConfig)
    assert config.mqtt.port == 8883
    assert config.mqtt.protocol == "5"
    assert config.mqtt.tls is not None
    assert config.mqtt.tls.ca_file == "/etc/iotids/ca.pem"
    assert config.mqtt.resolved_client_id("gw-1") == "iotids-gw-1"
    assert config.outbox.resolved_path(config.agent.state_dir) == "/tmp/iotids-state/outbox.sqlite"
    live = config.source("lan").options
    assert isinstance(live, LiveOptions)
    assert live.promiscuous
    sensors = config.source("plant").options
    assert isinstance(sensors, MqttSensorsOptions)
    assert sensors.sensors == ("temp", "pressure")
    assert sensors.topics[1].field == "bar"
    assert config.source("plant").step_spec.size == 2.0
    assert config.models[0].raise_k == 1
    with pytest.raises(AttributeError):
        config.mqtt.port = 1  # type: ignore[misc]


def test_defaults_fill_absent_tables() -> None:
    config = parse_config(_base(sources=[{"name": "f", "kind": "pcap", "path": "x.pcap"}]))
    assert config.mqtt.host == "localhost"
    assert config.mqtt.homeassistant.discovery_prefix == "homeassistant"
    assert config.mqtt.tls is None
    assert config.agent.queue_size == 256
    assert isinstance(config.sources[0].options, PcapOptions)
    assert config.sources[0].step == ""  # the bundle's step at start, else one second
    assert config.sources[0].step_spec.text == "1.0s"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_base(mqtt={"port": 70000}), "mqtt.port: must be 1..65535, got 70000"),
        (
            _base(
                sources=[{"name": "a", "kind": "pcap", "path": "x"}, {"name": "b", "kind": "pcapp"}]
            ),
            "sources[1].kind: unknown source 'pcapp' "
            "(valid: csv, host, live, live-ring, mqtt-sensors, pcap)",
        ),
        (
            _base(mqtt={"password": "hunter2"}),
            "mqtt.password: secrets come from the environment or systemd credentials, "
            "not the config file",
        ),
        (
            _base(mqtt={"username": "u"}),
            "mqtt.username: secrets come from the environment or systemd credentials, "
            "not the config file",
        ),
        ({"agent": {"device_id": "a/b"}}, "agent.device_id: must be 1..64 characters"),
        ({"agent": {"device_id": "a+"}}, "agent.device_id: must be"),
        ({"agent": {"device_id": ""}}, "agent.device_id: must be"),
        ({"agent": {"device_id": "x" * 65}}, "agent.device_id: must be"),
        ({"agent": {}}, "agent.device_id: required"),
        ({}, "agent: required table [agent] is missing"),
        (_base(mqtt={"qos": 1}), "mqtt.qos: unknown key (valid: "),
        (_base(mqtt={"stats_qos": 3}), "mqtt.stats_qos: must be 0, 1 or 2, got 3"),
        (_base(mqtt={"port": "1883"}), "mqtt.port: must be an integer, got a string"),
        (_base(mqtt={"port": True}), "mqtt.port: must be an integer, got a boolean"),
        (_base(mqtt={"protocol": 5}), "mqtt.protocol: must be one of '3.1.1', '5', got 5"),
        (_base(mqtt={"tls": {"cert_file": "c.pem"}}), "mqtt.tls.key_file: cert_file and key_file"),
        (_base(mqtt={"tls": {"ca": "x"}}), "mqtt.tls.ca: unknown key"),
        (
            _base(mqtt={"homeassistant": {"discovery_prefix": "ha/#"}}),
            "mqtt.homeassistant.discovery_prefix: must be",
        ),
        (_base(mqtt={"backoff_min": 5.0, "backoff_max": 1.0}), "mqtt.backoff_max: must be >="),
        (_base(outbox={"max_messages": 0}), "outbox.max_messages: must be >= 1, got 0"),
        (
            _base(sources=[{"name": "a", "kind": "pcap"}]),
            "sources[0].path: required",
        ),
        (
            _base(sources=[{"name": "a", "kind": "pcap", "path": "x", "sped": 2}]),
            "sources[0].sped: unknown key (valid: loop, path, realtime, speed)",
        ),
        (
            _base(sources=[{"name": "a", "kind": "pcap", "path": "x", "speed": 0}]),
            "sources[0].speed: must be in (0, 10000], got 0",
        ),
        (
            _base(sources=[{"name": "a", "kind": "pcap", "path": "x", "step": "fast"}]),
            "sources[0].step: must look like '1s', '0.5s' or '100p', got 'fast'",
        ),
        (
            _base(sources=[{"name": "h", "kind": "host", "step": "100p"}]),
            "sources[0].step: a host source steps by time",
        ),
        (
            _base(sources=[{"name": "l", "kind": "live", "interface": "a-very-long-interface"}]),
            "sources[0].interface: must be an interface name",
        ),
        (
            # setsockopt and the ring's struct failed with a traceback past these
            _base(
                sources=[
                    {"name": "r", "kind": "live-ring", "interface": "eth0"}
                    | {"buffer_bytes": 2**31}
                ]
            ),
            "sources[0].buffer_bytes: must be 65536..268435456, got 2147483648",
        ),
        (
            _base(sources=[{"name": "m", "kind": "mqtt-sensors", "topics": [{"topic": "t"}]}]),
            "sources[0].topics[0].sensor: required",
        ),
        (
            _base(sources=[{"name": "a", "kind": "host"}, {"name": "a", "kind": "host"}]),
            "sources[1].name: duplicate name 'a'",
        ),
        (
            _base(models=[{"name": "m", "bundle": "b", "source": "nowhere"}]),
            "models[0].source: unknown source 'nowhere'",
        ),
        (
            _base(
                sources=[{"name": "h", "kind": "host"}],
                models=[{"name": "m", "bundle": "b", "source": "h", "raise_k": 4}],
            ),
            "models[0].raise_k: must be 1..raise_n (3), got 4",
        ),
        (
            _base(agent2={}),
            "agent2: unknown key (valid: agent, calibration, models, mqtt, outbox, sources)",
        ),
        (_base(sources={"name": "x"}), "sources: must be an array, got a table"),
    ],
)
def test_every_mistake_is_one_line_naming_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    text = str(caught.value)
    assert text.startswith(message), text
    assert "\n" not in text
    assert isinstance(caught.value, ValueError)


def test_unreadable_and_invalid_toml_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[agent\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_every_registered_kind_resolves_its_class_and_options() -> None:
    import dataclasses

    from agent.sources.registry import SOURCE_KINDS, options_class, resolve

    for kind, entry in SOURCE_KINDS.items():
        assert dataclasses.is_dataclass(options_class(kind)), kind
        assert callable(resolve(entry.factory)), kind
