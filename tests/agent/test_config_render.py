"""The agent-config renderer: AgentConfig -> TOML -> parse_config gives the same AgentConfig."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from agent.config import parse_config
from agent.config_render import render_config, toml_value

REPO = Path(__file__).resolve().parents[2]

FULL = {
    "agent": {
        "device_id": "gw-01",
        "state_dir": "/tmp/state",
        "stats_interval": 2.5,
        "queue_size": 512,
        "trusted_keys": ["/etc/iotids/keys/a.pub", '/etc/iotids/keys/b "q".pub'],
    },
    "mqtt": {
        "host": "broker.lan",
        "port": 8883,
        "replay_rate": 1000.0,
        "tls": {},
        "homeassistant": {"enabled": False},
    },
    "outbox": {"max_messages": 10, "max_bytes": 100_000},
    "sources": [
        {"name": "lan", "kind": "live", "interface": "eth0", "promiscuous": True, "step": "100p"},
        {"name": "traffic", "kind": "pcap", "path": "/x/t.pcap", "realtime": True, "speed": 15.0},
        {"name": "tele", "kind": "csv", "path": "/x/t.csv", "sensors": ["temp", "hum"]},
        {
            "name": "sensors",
            "kind": "mqtt-sensors",
            "topics": [
                {"topic": "home/+/temp", "sensor": "temp"},
                {"topic": "home/door", "sensor": "door", "values": {"open": 1.0, "shut": 0.0}},
            ],
        },
        {"name": "host", "kind": "host"},
    ],
    "models": [
        {"name": "traffic", "bundle": "/b/t.iotids", "source": "lan", "threads": 2},
        {"name": "tele", "bundle": "/b/g.iotids", "source": "tele", "enabled": False},
    ],
    "calibration": {"duration": "2h"},
}


def test_full_config_round_trips() -> None:
    config = parse_config(FULL)
    text = render_config(config, header=["written by a test"], comments={"mqtt.tls": "why"})
    assert text.startswith("# written by a test\n")
    assert "# why\n[mqtt.tls]\n" in text  # an all-default optional table is still written
    assert parse_config(tomllib.loads(text)) == config


def test_minimal_config_renders_only_what_differs_from_defaults() -> None:
    config = parse_config({"agent": {"device_id": "gw"}})
    text = render_config(config)
    assert text == '[agent]\ndevice_id = "gw"\n'
    assert parse_config(tomllib.loads(text)) == config


@pytest.mark.parametrize(
    "value",
    ["plain", 'quote " and \\ back', "tab\tnew\nline", "del\x7f", "ünïcode", 0.1, -3, 1e300],
)
def test_values_survive_toml(value: object) -> None:
    assert tomllib.loads(f"k = {toml_value(value)}")["k"] == value


def test_rendered_file_passes_validate_config(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(render_config(parse_config(FULL)), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "agent", "validate-config", str(path), "--file-only"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
