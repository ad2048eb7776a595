"""The operator's discovery script ``iotids provision`` renders, run against the example broker."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.cli import main
from agent.config import load_config
from agent.report.homeassistant import discovery_messages
from tests.broker import EXAMPLE_ACL, Broker, Probe, example_listener_options
from tests.firmware.fixtures import Inputs

USERS = {"gw-01": "p1", "iotids-operator": "op"}


def _render(inputs: Inputs, out: Path) -> Path:
    args = [
        "provision", "--profile", "pi4", "--device-id", "gw-01", "--broker", "mqtt://b",
        "--bundle", str(inputs.bundle), "--trust-key", str(inputs.key), "--out", str(out),
    ]  # fmt: skip
    assert main(args) == 0
    return out / "operator/publish-discovery.sh"


def _publish(script: Path, broker: Broker, user: str) -> subprocess.CompletedProcess[str]:
    login = ["-h", broker.host, "-p", str(broker.port), "-u", user, "-P", USERS[user]]
    return subprocess.run(
        ["sh", str(script), *login], capture_output=True, text=True, timeout=30, check=False
    )


def test_the_gateway_leaves_discovery_to_the_operator(inputs: Inputs, tmp_path: Path) -> None:
    script = _render(inputs, tmp_path / "gw")
    config = load_config(tmp_path / "gw/iotids/agent.toml")
    assert config.mqtt.homeassistant.enabled is False
    assert script.stat().st_mode & 0o111
    if shutil.which("shellcheck") is not None:
        checked = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
        assert (checked.returncode, checked.stdout) == (0, "")


@pytest.mark.broker
def test_the_operator_script_publishes_what_the_agent_would_and_a_gateway_cannot(
    inputs: Inputs, tmp_path: Path, broker: Callable[..., Broker]
) -> None:
    if shutil.which("mosquitto_pub") is None:
        pytest.skip("mosquitto_pub is not installed (Debian package mosquitto-clients)")
    script = _render(inputs, tmp_path / "gw")
    mosq = broker(users=USERS, acl_file=EXAMPLE_ACL, options=example_listener_options())
    as_gateway = _publish(script, mosq, "gw-01")  # accepted on the wire, denied by the ACL
    assert as_gateway.returncode == 0, as_gateway.stderr
    assert mosq.count("Denied PUBLISH from gw-01") == 4
    done = _publish(script, mosq, "iotids-operator")
    assert done.returncode == 0, done.stderr
    expected = dict(discovery_messages("gw-01", "iotids", "homeassistant"))
    with Probe(mosq, ["homeassistant/#"], client_id="hass", username="iotids-operator",
               password="op") as hass:  # fmt: skip
        for _ in expected:
            assert hass.wait_for(lambda m: m.retain, 5) is not None
    assert {m.topic: m.payload for m in hass.seen} == expected
