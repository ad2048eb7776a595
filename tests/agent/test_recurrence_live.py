"""A flood back after a pause, through a real ``agent run`` and a real Mosquitto: two detections,
each sent in full, the second naming the first as its incident."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.contract import Topics
from tests.agent import agent_run
from tests.agent.bundles import flood_frames, pcap_bytes
from tests.agent.flood_bundle import REPO, flood_kit
from tests.broker import Broker, Probe

pytestmark = pytest.mark.broker


def test_a_flood_back_after_a_pause_reaches_the_broker_as_a_recurrence(tmp_path: Path) -> None:
    kit = flood_kit(tmp_path / "kit")
    t0 = 1_700_000_000.0
    # two 4-s floods on one victim 70 s apart: past the 30-s hold, within the hour's recur
    first, _ = flood_frames(t0=t0, calm_s=5, flood_s=4, calm_after_s=61)
    again, _ = flood_frames(t0=t0 + 70, calm_s=0, flood_s=4, calm_after_s=10)
    capture = tmp_path / "back.pcap"
    capture.write_bytes(pcap_bytes(first + again))
    broker = Broker(tmp_path / "broker", persistence=False)
    broker.start()
    topics = Topics.for_device("iotids", "gw")
    config = agent_run.agent_toml(kit, tmp_path, agent_run.mqtt_toml(broker))
    config.write_text(
        config.read_text()
        .replace(str(kit.capture), str(capture))
        .replace("loop = true", "loop = false")
    )
    try:
        with Probe(broker, [topics.events, topics.state]) as probe:
            done = subprocess.run(
                [sys.executable, "-m", "agent", "run", "--config", str(config)],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stderr[-2000:]
            # the agent exits once its messages are acknowledged; the probe may lag a little
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and _ends(probe, topics.events) < 2:
                time.sleep(0.05)
    finally:
        broker.kill()
    assert "Traceback" not in done.stderr
    events = [json.loads(m.payload) for m in probe.seen if m.topic == topics.events]
    news = [e for e in events if e["type"] == "new"]
    assert len(news) == 2, [(e["type"], e["window_end"] - t0) for e in events]
    assert [e["type"] for e in events if e["detection"] == news[1]["detection"]][-1] == "end"
    assert (news[0]["incident"], news[0]["recurrence"]) == (news[0]["detection"], 0)
    assert (news[1]["incident"], news[1]["recurrence"]) == (news[0]["detection"], 1)
    states = [json.loads(m.payload) for m in probe.seen if m.topic == topics.state]
    last = states[-1]["last_attack"]
    assert (last["incident"], last["recurrence"]) == (news[0]["detection"], 1)


def _ends(probe: Probe, topic: str) -> int:
    return sum(
        1 for m in list(probe.seen) if m.topic == topic and json.loads(m.payload)["type"] == "end"
    )
