"""Nothing lost, nothing stuck, nobody impersonated: the real agent process and a real Mosquitto.

* a detection open when the agent is SIGKILLed ends after the restart (``end_reason``
  ``agent-restart``) and the retained state Home Assistant reads says so;
* an unusable outbox path is one error line and exit 2, with nothing touched;
* on the example broker (its ACL and identity options) a gateway can neither take another's
  client id nor place a Home Assistant entity under another gateway's device;
* across a broker outage with a SIGKILL, every ``new`` and ``end`` arrives, in order.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.agent.bundles import flood_frames, pcap_bytes
from tests.broker import Broker, Probe, Received
from tests.e2e.agent_process import AgentProcess, agent_toml
from tests.e2e.conftest import AgentFactory

pytestmark = [pytest.mark.broker, pytest.mark.tf]  # tf: the session's bundle is built with TF

BrokerFactory = Callable[..., Broker]
DEVICE = "gw-e2e"


def _topic(leaf: str, device: str = DEVICE) -> str:
    return f"iotids/{device}/{leaf}"


EVENTS, STATE, STATUS, STATS = (_topic(leaf) for leaf in ("events", "state", "status", "stats"))


def _wait(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def _events(messages: Iterable[Received], topic: str = EVENTS) -> list[dict[str, Any]]:
    """Events in first-arrival order, duplicates (QoS 1 redeliveries) dropped by id."""
    seen: set[str] = set()
    events = []
    for message in list(messages):
        if message.topic != topic:
            continue
        event = json.loads(message.payload)
        if event["id"] not in seen:
            seen.add(event["id"])
            events.append(event)
    return events


def _states(messages: Iterable[Received]) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in list(messages) if m.topic == STATE]


def _retained(broker: Broker, topic: str, **login: str) -> Received | None:
    """What a client subscribing now gets on ``topic`` (Home Assistant after its restart)."""
    with Probe(broker, [topic], client_id="late", **login) as late:
        return late.wait_for(lambda m: m.topic == topic, 5)


def _calm_capture(path: Path) -> Path:
    """60 s of calm telemetry: no detection."""
    frames, _ = flood_frames(calm_s=30, flood_s=0, calm_after_s=30)
    path.write_bytes(pcap_bytes(frames))
    return path


def _snapshot(root: Path) -> list[tuple[str, bytes | None]]:
    """Every path under ``root`` with its bytes (None for folders), the agent's log aside."""
    return [
        (str(p.relative_to(root)), p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
        if p.name != "agent.log"
    ]


def _reconfigure(agent: AgentProcess, broker: Broker, **changes: Any) -> None:
    """Restart ``agent`` later on the same state directory with other settings."""
    agent.setup = replace(agent.setup, **changes)
    agent.config_path.write_text(agent_toml(agent.setup, broker, agent.state_dir))


# --- a detection open at SIGKILL ------------------------------------------------------------


@pytest.mark.slow
def test_a_detection_open_at_sigkill_ends_at_restart_and_the_retained_state_follows(
    mosquitto: Broker, agents: AgentFactory, tmp_path: Path
) -> None:
    agent = agents(mosquitto)
    with Probe(mosquitto, [EVENTS, STATE], client_id="operator") as probe:
        agent.start()
        raised = probe.wait_for(
            lambda m: m.topic == EVENTS and json.loads(m.payload)["type"] == "new", 40
        )
        assert raised is not None, agent.log()
        assert _wait(lambda: any(s["active_events"] == 1 for s in _states(probe.seen)), 10)
        assert agent.kill() == -signal.SIGKILL  # mid-attack: the detection is open
    stale = _retained(mosquitto, STATE)
    assert stale is not None
    assert json.loads(stale.payload)["active_events"] == 1  # what the crash left behind
    new = json.loads(raised.payload)
    _reconfigure(agent, mosquitto, capture=_calm_capture(tmp_path / "calm.pcap"), loop=False)
    with Probe(mosquitto, [EVENTS, STATE], client_id="operator") as probe:
        agent.start()
        assert _wait(lambda: any(e["type"] == "end" for e in _events(probe.seen)), 30), agent.log()
        assert _wait(
            lambda: (
                _states(probe.seen)[-1:] != [] and _states(probe.seen)[-1]["active_events"] == 0
            ),
            10,
        )
    assert agent.terminate() == 0
    ends = [e for e in _events(probe.seen) if e["type"] == "end"]
    assert len(ends) == 1
    end = ends[0]
    assert end["detection"] == new["detection"]
    assert end["end_reason"] == "agent-restart"
    assert end["active_events"] == 0
    assert end["label"] == new["label"]
    assert new["start"] <= end["end"]  # the last moment it was seen open, on its own clock
    assert end["id"] != new["id"]
    # A Home Assistant that restarts now reads the truth from the broker.
    after = _retained(mosquitto, STATE)
    assert after is not None
    assert after.retain
    state = json.loads(after.payload)
    assert state["schema"] == "iotids.state/1"
    assert (state["active_events"], state["detections"]) == (0, [])
    assert state["last_attack"]["detection"] == new["detection"]
    assert state["last_attack"]["end_reason"] == "agent-restart"
    assert "was open when the agent last stopped" in agent.log()
    assert "Traceback" not in agent.log()


# --- an unusable outbox path ----------------------------------------------------------------


@pytest.mark.parametrize("what", ["directory", "not-sqlite"])
def test_an_unusable_outbox_path_exits_2_with_one_line_and_touches_nothing(
    mosquitto: Broker, agents: AgentFactory, tmp_path: Path, what: str
) -> None:
    target = tmp_path / "outbox-target"
    if what == "directory":
        target.mkdir()
        (target / "keep.txt").write_text("the operator's files\n")
    else:
        target.write_text("# somebody's notes, not a database\n" * 20)
    agent = agents(mosquitto, outbox_path=target)
    before = _snapshot(tmp_path)
    agent.start()
    assert agent.wait_exit(60) == 2
    log = agent.log()
    lines = [line for line in log.splitlines() if " INFO " not in line and "XNNPACK" not in line]
    assert len(lines) == 1, log  # the one error; the rest is the bundle check's INFO
    assert "Traceback" not in log
    assert lines[0].startswith("iotids agent: outbox.path: ")
    assert str(target) in lines[0]
    assert "nothing was changed" in lines[0]
    assert _snapshot(tmp_path) == before
    assert not list(tmp_path.rglob("*.corrupt-*"))
