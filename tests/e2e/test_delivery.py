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
import re
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from agent.report.homeassistant import discovery_messages
from tests.agent.bundles import flood_frames, pcap_bytes
from tests.broker import EXAMPLE_ACL, Broker, Probe, Received, example_listener_options
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
    """Every path under ``root`` with its bytes (None for folders), logs aside (the broker's)."""
    return [
        (str(p.relative_to(root)), p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
        if p.suffix != ".log"
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


# --- the example broker: no impersonation -----------------------------------------------------

_USERS = {"gw-a": "pa", "gw-b": "pb", "iotids-operator": "op", "homeassistant": "ha"}
_OPERATOR = {"username": "iotids-operator", "password": "op"}


def _fake_entities() -> list[tuple[str, bytes]]:
    """What a compromised gw-a would plant: a sensor under gw-b's device, one over gw-b's own."""
    fake = {
        "name": "Intrusion",
        "state_topic": "iotids/gw-a/state",
        "value_template": "OFF",
        "unique_id": "iotids_gw-b_planted",
        "device": {"identifiers": ["iotids_gw-b"]},
    }
    body = json.dumps(fake).encode()
    return [
        ("homeassistant/binary_sensor/gw-a/planted/config", body),
        ("homeassistant/binary_sensor/gw-b/intrusion/config", body),
        ("homeassistant/binary_sensor/iotids_gw-b/planted/config", body),
    ]


def _impersonate(broker: Broker, rounds: int) -> None:
    """Log in as gw-a ``rounds`` times asking for gw-b's client id, planting discovery configs."""
    for _ in range(rounds):
        rogue = Probe(broker, client_id="iotids-gw-b", username="gw-a", password="pa")
        with rogue:
            for topic, payload in _fake_entities():
                rogue.publish(topic, payload, retain=True)
            time.sleep(0.3)


@pytest.mark.slow
@pytest.mark.parametrize("example_options", [True, False], ids=["example-conf", "without-it"])
def test_on_the_example_broker_a_gateway_cannot_pass_for_another(
    broker: BrokerFactory, agents: AgentFactory, example_options: bool
) -> None:
    options = example_listener_options() if example_options else []
    if example_options:
        assert options == ["use_username_as_clientid true"]
    mosq = broker(users=_USERS, acl_file=EXAMPLE_ACL, options=options)
    victim = agents(mosq, device="gw-b", credentials=("gw-b", "pb"), homeassistant=False)
    status_b = _topic("status", "gw-b")
    with Probe(mosq, [status_b, "homeassistant/#"], client_id="ops", **_OPERATOR) as ops:
        victim.start()
        assert ops.wait_for(lambda m: m.topic == status_b and m.payload == b"online", 30)
        # The operator publishes gw-b's discovery, as `iotids provision` renders it.
        genuine = discovery_messages("gw-b", "iotids", "homeassistant")
        for topic, payload in genuine:
            ops.publish(topic, payload, retain=True)
        _impersonate(mosq, rounds=8)
        time.sleep(2.0)  # room for the victim's reconnects to show
        flaps = [m for m in ops.seen if m.topic == status_b and m.payload == b"offline"]
    with Probe(
        mosq, ["homeassistant/#"], client_id="hass", username="homeassistant", password="ha"
    ) as hass:
        _wait(lambda: len(hass.seen) >= len(genuine), 5)
        time.sleep(0.5)
        retained = {m.topic: m.payload for m in hass.seen if m.retain}
    assert victim.terminate() == 0
    if not example_options:
        # Control: the same broker without the example's identity option shows the defect.
        assert flaps, victim.log()
        assert "lost the connection" in victim.log()
        return
    assert flaps == [], "gw-a knocked gw-b offline"
    assert "lost the connection" not in victim.log()
    assert retained == dict(genuine)  # nothing planted, nothing overwritten
    assert mosq.count("Denied PUBLISH from gw-a") == 8 * len(_fake_entities())
    assert mosq.count("Denied PUBLISH from gw-b") == 0  # the victim stays in its lane


# --- produced vs delivered across an outage with a SIGKILL ----------------------------------


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _produced(log: str) -> list[tuple[str, str]]:
    """(type, detection) of every new/end the agent's decider and restart logged, in order."""
    produced = []
    for line in log.splitlines():
        words = line.split()
        if "agent.decide:" in words and len(words) > 6 and words[4] in ("new", "end"):
            # "<kind> <label> (<family>) <detection id> score=..."
            ids = [w for w in words[5:] if _UUID.fullmatch(w)]
            produced.append((words[4], ids[0] if ids else ""))
        elif "was open when the agent last stopped" in line:
            produced.append(("end", words[words.index("detection") + 1]))
    return produced


@pytest.mark.slow
def test_every_new_and_end_arrives_in_order_across_an_outage_and_a_sigkill(
    broker: BrokerFactory, agents: AgentFactory
) -> None:
    mosq = broker()  # persistent: the operator's session outlives the outage
    agent = agents(mosq)  # default outbox caps, a flood every 9 s of capture
    produced: list[tuple[str, str]] = []
    with Probe(mosq, [EVENTS, STATS], client_id="operator", clean=False) as probe:
        agent.start()
        assert _wait(lambda: any(e["type"] == "end" for e in _events(probe.seen)), 40)
        mosq.stop()
        time.sleep(15.0)  # the attacks go on while nobody listens
        assert agent.kill() == -signal.SIGKILL
        produced += _produced(agent.log())
        held = agent.queued_events()
        mosq.start()
        agent.start()
        time.sleep(15.0)
        assert agent.terminate() == 0
        produced += _produced(agent.log())
        assert _wait(lambda: len(_events(probe.seen)) >= len(held), 20)
        time.sleep(1.0)
        stats = [json.loads(m.payload) for m in list(probe.seen) if m.topic == STATS]
    delivered = [(e["type"], e["detection"]) for e in _events(probe.seen) if e["type"] != "update"]
    restarts = sum(1 for e in _events(probe.seen) if e.get("end_reason") == "agent-restart")
    updates = sum(1 for e in _events(probe.seen) if e["type"] == "update")
    held_kinds = [e["type"] for e in held]
    print(  # the figures the report quotes
        f"\nproduced new/end {len(produced)}, delivered new/end {len(delivered)} "
        f"(new {sum(t == 'new' for t, _ in delivered)}, end {sum(t == 'end' for t, _ in delivered)}"
        f", of which agent-restart {restarts}); updates delivered {updates}; held in the outbox "
        f"at SIGKILL {len(held)} ({', '.join(held_kinds)})"
    )
    assert delivered == produced  # every new and end, in the order it was produced
    assert [e["id"] for e in _events(probe.seen) if e["id"] in {h["id"] for h in held}] == [
        h["id"] for h in held
    ]
    opened: set[str] = set()
    for kind, detection in delivered:  # each detection: one new, then one end
        if kind == "new":
            assert detection not in opened
            opened.add(detection)
        else:
            opened.remove(detection)
    assert opened == set()  # SIGTERM ended the last one
    assert held, "the outage should have left events on disk"
    assert all(s["outbox"]["dropped"]["event_new"] == 0 for s in stats)
    assert all(s["outbox"]["dropped"]["event_end"] == 0 for s in stats)
    assert agent.queued_events() == []


@pytest.mark.slow
def test_at_a_small_cap_a_long_outage_costs_stats_and_updates_never_a_new_or_end(
    broker: BrokerFactory, agents: AgentFactory
) -> None:
    mosq = broker()
    # 40 rows for a 20 s outage with stats 5 times a second: the cap is hit within seconds.
    agent = agents(mosq, outbox_max_messages=40, stats_interval=0.2)
    with Probe(mosq, [EVENTS, STATS], client_id="operator", clean=False) as probe:
        agent.start()
        assert probe.wait_for(lambda m: m.topic == STATS, 30) is not None, agent.log()
        mosq.stop()
        time.sleep(20.0)
        held = agent.queued_events()
        mosq.start()
        time.sleep(5.0)
        assert agent.terminate() == 0
        assert _wait(lambda: not agent.queued_events(), 10)
        time.sleep(1.0)
        stats = [json.loads(m.payload) for m in list(probe.seen) if m.topic == STATS]
    produced = _produced(agent.log())
    delivered = [(e["type"], e["detection"]) for e in _events(probe.seen) if e["type"] != "update"]
    dropped = stats[-1]["outbox"]["dropped"]
    print(  # the figures the report quotes
        f"\ncap 40, 20 s outage, stats every 0.2 s: dropped {dropped}; new/end produced "
        f"{len(produced)}, delivered {len(delivered)}; events held at reconnect {len(held)}"
    )
    assert dropped["stats"] > 0  # the cap was hit
    assert dropped["event_new"] == dropped["event_end"] == 0
    assert delivered == produced
