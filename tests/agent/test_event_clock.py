"""Events speak one clock and one schema.

A replayed capture's detection ended by SIGTERM ends on the capture's clock, like its start;
``agent replay --json`` lines are the ``iotids.event/1`` payload MQTT carries (``device``,
``time``, ``id``, ``active_events``), and every event carries a readable ``score_ratio``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.agent.flood_bundle import FloodKit, flood_kit
from tests.broker import REPO, Broker, Probe

pytestmark = pytest.mark.tf  # the int8 flood model is converted once by TensorFlow

CAPTURE_SPAN_S = 40.0  # the flood capture lasts 32 s from its first packet


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> FloodKit:
    return flood_kit(tmp_path_factory.mktemp("clock"))


def _on_capture_clock(kit: FloodKit, value: object) -> bool:
    return isinstance(value, float) and abs(value - kit.flood_start) < CAPTURE_SPAN_S


def test_replay_json_lines_are_the_mqtt_event_payload(kit: FloodKit) -> None:
    done = subprocess.run(
        [
            *(sys.executable, "-m", "agent", "replay", "--bundle", str(kit.bundle)),
            *("--trust-key", str(kit.public_key), "--capture", str(kit.capture), "--json"),
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert events[0]["type"] == "new"
    assert events[-1]["type"] == "end"
    ids = set()
    for event in events:
        assert event["schema"] == "iotids.event/1"
        assert event["device"] == "replay"
        ids.add(event["id"])
        for key in ("start", "window_end", "end", "time"):
            if event[key] is not None:
                assert _on_capture_clock(kit, event[key]), (key, event[key])
        assert event["time"] == event["window_end"]
        assert event["threshold"] == 0.5
        assert event["score_ratio"] == round(event["score"] / 0.5, 3)
    assert len(ids) == len(events)
    assert [e["active_events"] for e in events] == [1] * (len(events) - 1) + [0]


@pytest.mark.broker
@pytest.mark.slow
def test_sigterm_ends_a_replayed_detection_on_the_capture_clock(
    kit: FloodKit, mosquitto: Broker, tmp_path: Path
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[agent]\ndevice_id = "gw"\nstate_dir = "{tmp_path / "state"}"\n'
        f'trusted_keys = ["{kit.public_key}"]\n'
        f'[mqtt]\nhost = "{mosquitto.host}"\nport = {mosquitto.port}\n'
        "[mqtt.homeassistant]\nenabled = false\n"
        f'[[sources]]\nname = "lan"\nkind = "pcap"\npath = "{kit.capture}"\n'
        "realtime = true\nspeed = 4.0\n"
        f'[[models]]\nname = "cnn"\nbundle = "{kit.bundle}"\nsource = "lan"\n'
    )
    log = (tmp_path / "agent.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--config", str(config)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        with Probe(mosquitto, ["iotids/gw/events"]) as probe:
            new = probe.wait_for(lambda m: json.loads(m.payload)["type"] == "new", 60.0)
            assert new is not None, (tmp_path / "agent.log").read_text()[-3000:]
            process.send_signal(signal.SIGTERM)
            assert process.wait(30) == 0
            end = probe.wait_for(lambda m: json.loads(m.payload)["type"] == "end", 10.0)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
    assert end is not None
    opened, ended = json.loads(new.payload), json.loads(end.payload)
    assert ended["detection"] == opened["detection"]
    assert _on_capture_clock(kit, ended["start"])
    assert _on_capture_clock(kit, ended["end"]), ended["end"]  # not the wall clock of SIGTERM
    assert ended["end"] >= ended["start"]
