"""The MQTT delivery guarantees, proven with the real agent process in the loop.

Each test starts a real Mosquitto and ``python -m agent run --config F`` replaying a generated
SYN-flood capture in real time through a signed int8 bundle, and watches the broker with a paho
subscriber. The sink-level versions of these checks live in tests/report/test_mqtt_broker.py;
these prove that the agent as shipped (config, threads, signals, outbox on disk) keeps them.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from agent.features.schema import FeatureSet
from agent.features.traffic import TRAFFIC_V1
from tests.agent.bundles import (
    bundle_bytes,
    flood_frames,
    manifest_for,
    pcap_bytes,
    tampered,
    with_fields,
)
from tests.agent.flood_bundle import FloodKit
from tests.broker import EXAMPLE_ACL, REPO, Broker, Probe, Received, make_pki
from tests.e2e.conftest import AgentFactory

pytestmark = [pytest.mark.broker, pytest.mark.tf]  # tf: the session's bundle is built with TF

BrokerFactory = Callable[..., Broker]
DEVICE = "gw-e2e"
BUNDLE_ID = "flood-int8-test"


def _topic(leaf: str, device: str = DEVICE) -> str:
    return f"iotids/{device}/{leaf}"


STATUS, EVENTS, STATS, MODEL, MODEL_SET = (
    _topic(leaf) for leaf in ("status", "events", "stats", "model", "model/set")
)


def _is(topic: str, payload: bytes | None = None) -> Callable[[Received], bool]:
    return lambda m: m.topic == topic and (payload is None or m.payload == payload)


def _wait(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def _unique_events(messages: Iterable[Received], topic: str = EVENTS) -> list[dict[str, Any]]:
    """Events on ``topic`` in arrival order; a duplicate must repeat its first copy exactly."""
    first: dict[str, bytes] = {}
    events: list[dict[str, Any]] = []
    for message in list(messages):
        if message.topic != topic:
            continue
        event = json.loads(message.payload)
        if event["id"] in first:
            assert message.payload == first[event["id"]], "a duplicate differs from its original"
            continue
        first[event["id"]] = message.payload
        events.append(event)
    return events


def _json(messages: Iterable[Received], topic: str) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in list(messages) if m.topic == topic]


def _errors(log: str) -> list[str]:
    return [line for line in log.splitlines() if " ERROR " in line]


def _retained(
    broker: Broker, topic: str, username: str | None = None, password: str | None = None
) -> Received | None:
    """What a client subscribing now gets on ``topic`` (the retained message, if any)."""
    with Probe(broker, [topic], client_id="late", username=username, password=password) as late:
        return late.wait_for(_is(topic), 5)


# --- 1. schema ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_events_arrive_with_the_documented_schema_and_online_is_retained(
    mosquitto: Broker, agents: AgentFactory
) -> None:
    agent = agents(mosquitto)
    with Probe(mosquitto, [_topic("#")]) as probe:
        agent.start()
        assert probe.wait_for(_is(STATUS, b"online"), 30) is not None, agent.log()
        assert _wait(
            lambda: [e["type"] for e in _unique_events(probe.seen)][:2] == ["new", "end"], 30
        ), agent.log()
        assert _wait(lambda: bool(_json(probe.seen, STATS)), 10)
        retained = _retained(mosquitto, STATUS)
        model_retained = _retained(mosquitto, MODEL)
    assert agent.terminate() == 0
    new, end = _unique_events(probe.seen)[:2]
    for event in (new, end):
        assert event["schema"] == "iotids.event/1"
        assert event["device"] == DEVICE
        assert isinstance(event["time"], float)
        assert len(event["id"]) == 32
        assert event["detection"] == new["detection"]
        assert event["label"] == "flood"
        assert event["category"] == "flood"  # the family of the bundle's "dos"
        assert event["model"] == BUNDLE_ID
        assert 0.5 <= event["peak_score"] <= 1.0
        assert event["start"] <= event["window_end"]
        evidence = event["evidence"]
        assert set(evidence) == {
            "packets", "bytes", "top_sources", "top_destinations", "top_ports"
        }  # fmt: skip
        assert all(set(s) == {"address", "packets"} for s in evidence["top_sources"])
        assert evidence["top_destinations"][0]["address"] == "192.168.1.1"
        assert set(event["labels"]) == {"flood"}  # the detection's label histogram
    assert new["id"] != end["id"]
    assert new["type"] == "new"
    assert new["active_events"] == 1
    assert new["end"] is None
    assert new["score"] >= 0.5
    assert new["evidence"]["top_ports"][0]["port"] == 80
    assert new["evidence"]["packets"] > 1000  # the flood runs at 1000 SYN/s
    assert end["type"] == "end"
    assert end["active_events"] == 0
    assert end["end"] >= end["window_end"] - 1e-6
    stats = _json(probe.seen, STATS)[0]
    assert stats["schema"] == "iotids.stats/1"
    assert stats["active_model"] == {"cnn": BUNDLE_ID}
    assert set(stats["outbox"]) == {"depth", "bytes", "dropped"}
    assert retained is not None
    assert (retained.payload, retained.retain) == (b"online", True)
    assert model_retained is not None
    assert model_retained.retain
    model = json.loads(model_retained.payload)
    assert model["schema"] == "iotids.model/1"
    assert model["bundle_id"] == BUNDLE_ID
    assert model["schema_id"] == TRAFFIC_V1.schema_id


# --- 2. a 30 s broker outage during an attack ---------------------------------------------------


def _two_floods(path: Path) -> Path:
    """45 s: SYN floods at 2-10 s and 22-30 s, calm otherwise (both detections end in the file)."""
    t0 = 1_700_000_000.0
    first, _ = flood_frames(t0=t0, calm_s=2, flood_s=8, calm_after_s=10, flood_rate=1000)
    second, _ = flood_frames(t0=t0 + 20, calm_s=2, flood_s=8, calm_after_s=15, flood_rate=1000)
    path.write_bytes(pcap_bytes(sorted(first + second, key=lambda f: f[0])))
    return path


def _offline_replay(kit: FloodKit, capture: Path) -> list[dict[str, Any]]:
    """The events ``iotids agent replay --json`` finds in the capture (no broker involved)."""
    done = subprocess.run(
        [
            *(sys.executable, "-m", "agent", "replay", "--json"),
            *("--bundle", str(kit.bundle), "--capture", str(capture)),
            *("--trust-key", str(kit.public_key)),
            *("--hold", "0"),  # as the test agents (tests.e2e.agent_process.AgentSetup.hold)
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return [json.loads(line) for line in done.stdout.splitlines()]


def _what(event: dict[str, Any]) -> tuple[object, ...]:
    """An event without its random ids: what was detected, when (capture time)."""
    return (event["type"], event["label"], event["start"], event["window_end"], event["end"])


@pytest.mark.slow
def test_a_thirty_second_outage_during_an_attack_loses_no_event(
    broker: BrokerFactory, agents: AgentFactory, kit: FloodKit, tmp_path: Path
) -> None:
    capture = _two_floods(tmp_path / "two-floods.pcap")
    expected = _offline_replay(kit, capture)
    assert [e["type"] for e in expected].count("new") == 2
    mosq = broker()  # persistent: the operator's session survives the outage
    agent = agents(mosq, capture=capture, loop=False)
    with Probe(mosq, [EVENTS], client_id="operator", clean=False) as probe:
        agent.start()
        assert probe.wait_for(_is(EVENTS), 40) is not None, agent.log()
        mosq.stop()
        down = time.monotonic()
        # The attack goes on while nobody listens: the agent keeps its events on disk.
        assert _wait(lambda: len(agent.queued_events()) >= 3, 29), agent.log()
        time.sleep(max(0.0, 30.0 - (time.monotonic() - down)))  # the target's outage: 30 s
        held = agent.queued_events()
        mosq.start()
        assert agent.wait_exit(60) == 0  # the capture ended: the agent stops on its own
        assert _wait(lambda: len(_unique_events(probe.seen)) >= len(expected), 20)
    received = _unique_events(probe.seen)
    assert [_what(e) for e in received] == [_what(e) for e in expected]
    ids = [e["id"] for e in received]
    assert [e["id"] for e in held] == ids[ids.index(held[0]["id"]) :][: len(held)]
    assert agent.queued_events() == []  # everything was acknowledged before it exited
    assert "lost the connection" in agent.log()
    assert "Traceback" not in agent.log()


# --- 3. SIGKILL while the broker is down --------------------------------------------------------


@pytest.mark.slow
def test_events_queued_by_an_agent_killed_during_an_outage_arrive_after_restart(
    broker: BrokerFactory, agents: AgentFactory
) -> None:
    mosq = broker(persistence=False)
    agent = agents(mosq)
    with Probe(mosq, [STATUS]) as probe:
        agent.start()
        assert probe.wait_for(_is(STATUS, b"online"), 30) is not None, agent.log()
    mosq.stop()
    assert _wait(lambda: [e["type"] for e in agent.queued_events()][:2] == ["new", "end"], 40)
    assert agent.kill() == -signal.SIGKILL
    held = agent.queued_events()
    mosq.start()
    with Probe(mosq, [EVENTS]) as probe:
        agent.start()
        assert _wait(lambda: len(_unique_events(probe.seen)) >= len(held), 30), agent.log()
        received = [e["id"] for e in _unique_events(probe.seen)]
    assert agent.terminate() == 0
    assert received[: len(held)] == [e["id"] for e in held]
    assert "queued messages" in agent.log()  # the restarted outbox said what it found


# --- 4. TLS ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_tls_with_a_test_ca_works_and_a_wrong_ca_is_one_clear_error(
    broker: BrokerFactory, agents: AgentFactory, tmp_path: Path
) -> None:
    pki = make_pki(tmp_path / "pki")
    stranger = make_pki(tmp_path / "stranger", ca_name="somebody else's CA")
    mosq = broker(tls=pki)
    good = agents(mosq, device="gw-tls", ca_file=pki.ca_cert)
    bad = agents(mosq, device="gw-wrong-ca", ca_file=stranger.ca_cert)
    with Probe(mosq, ["iotids/+/status"]) as probe:
        good.start()
        assert probe.wait_for(_is(_topic("status", "gw-tls"), b"online"), 30) is not None
        handshakes = mosq.count("New connection from")
        bad.start()
        assert bad.wait_log("TLS handshake", 30), bad.log()
        # paho retries every second: wait for two more refused handshakes at the broker
        assert _wait(lambda: mosq.count("New connection from") >= handshakes + 2, 15)
        assert bad.running  # still trying, quietly
    assert bad.terminate() == 0
    assert good.terminate() == 0
    assert not [m for m in probe.seen if m.topic == _topic("status", "gw-wrong-ca")]
    errors = _errors(bad.log())
    assert len(errors) == 1, errors
    assert "mqtt: TLS handshake with 127.0.0.1:" in errors[0]
    assert "certificate verify failed" in errors[0]
    assert not _errors(good.log())


# --- 5. wrong password --------------------------------------------------------------------------


@pytest.mark.slow
def test_a_wrong_password_is_one_error_line_and_no_reconnect_storm(
    broker: BrokerFactory, agents: AgentFactory
) -> None:
    mosq = broker(users={DEVICE: "right-password"})
    agent = agents(mosq, credentials=(DEVICE, "wrong-password"))
    agent.start()
    assert agent.wait_log("refused the credentials", 30), agent.log()
    time.sleep(3.0)  # backoff_min = 1 s: a naive client would try three more times by now
    attempts = mosq.count("Sending CONNACK")  # the MQTT attempts (not the port probe)
    assert agent.running  # alive, backing off
    assert agent.terminate() == 0
    assert attempts == 1, mosq.log()[-3000:]
    errors = _errors(agent.log())
    assert len(errors) == 1, errors
    assert f"mqtt: broker refused the credentials for user '{DEVICE}'" in errors[0]
    assert errors[0].endswith("retrying in 300 s")
    assert "wrong-password" not in agent.log()


# --- 6. per-device ACL --------------------------------------------------------------------------


@pytest.mark.slow
def test_with_the_example_acl_a_device_cannot_publish_under_another_device(
    broker: BrokerFactory, agents: AgentFactory
) -> None:
    users = {"gw-a": "pa", "gw-b": "pb", "iotids-operator": "op"}
    mosq = broker(users=users, acl_file=EXAMPLE_ACL)
    login = ("iotids-operator", "op")
    # As provisioned for this broker: the operator, not the gateway, publishes discovery.
    agent = agents(mosq, device="gw-a", credentials=("gw-a", "pa"), homeassistant=False)
    with Probe(
        mosq,
        ["iotids/#", "homeassistant/#"],
        client_id="operator",
        username=login[0],
        password=login[1],
    ) as probe:
        agent.start()
        assert probe.wait_for(_is(_topic("status", "gw-a"), b"online"), 30) is not None
        assert probe.wait_for(_is(_topic("events", "gw-a")), 30) is not None, agent.log()
        with Probe(mosq, client_id="gw-b", username="gw-b", password="pb") as rogue:
            rogue.publish(_topic("events", "gw-a"), b'{"forged": true}')
            rogue.publish(_topic("status", "gw-a"), b"offline", retain=True)
            rogue.publish(_topic("model", "gw-a"), b'{"forged": true}', retain=True)
            rogue.publish(_topic("events", "gw-b"), b'{"own": true}')
            # same client, same broker: its own event arrives after anything forged before it
            assert probe.wait_for(_is(_topic("events", "gw-b")), 10) is not None
        status = _retained(mosq, _topic("status", "gw-a"), *login)
    assert agent.terminate() == 0
    assert not [m for m in probe.seen if b"forged" in m.payload]
    assert not [m for m in probe.seen if m.topic == _topic("status", "gw-a") and m.retain]
    assert status is not None
    assert status.payload == b"online"
    assert mosq.count("Denied PUBLISH from gw-b") == 3
    assert mosq.count("Denied PUBLISH from iotids-gw-a") == 0  # the agent stays in its lane
    topics = {m.topic for m in probe.seen}
    leaves = ("status", "events", "stats", "model", "state")
    assert {_topic(leaf, "gw-a") for leaf in leaves} <= topics
    assert not [t for t in topics if t.startswith("homeassistant/")]


# --- 7. remote model update ---------------------------------------------------------------------


@pytest.mark.slow
def test_model_set_refuses_bad_bundles_while_detecting_and_keeps_a_good_one(
    mosquitto: Broker, agents: AgentFactory, kit: FloodKit
) -> None:
    signer: Any = kit.signer
    good_manifest = manifest_for(
        kit.model, TRAFFIC_V1, bundle_id="flood-v2", signer=signer, version=1
    )
    good = bundle_bytes(good_manifest, kit.model, signer)
    telemetry = FeatureSet("telemetry", 1, TRAFFIC_V1.columns)
    wrong_schema = with_fields(
        good_manifest, feature_set=telemetry.id, schema_id=telemetry.schema_id
    )
    bad = [
        (bundle_bytes(good_manifest, kit.model, None), "unsigned"),
        (tampered(good), "invalid for trusted key"),
        (bundle_bytes(wrong_schema, kit.model, signer), "bundle schema"),
    ]
    agent = agents(mosquitto)
    with Probe(mosquitto, [EVENTS, MODEL]) as probe:
        agent.start()
        assert probe.wait_for(_is(EVENTS), 30) is not None, agent.log()
        for data, _ in bad:
            probe.publish(MODEL_SET, data)
        assert _wait(lambda: len(_updates(probe.seen)) == len(bad), 30), agent.log()
        after_refusals = len(_unique_events(probe.seen))
        assert _wait(lambda: len(_unique_events(probe.seen)) > after_refusals, 20)  # still on
        probe.publish(MODEL_SET, good)
        assert _wait(lambda: len(_updates(probe.seen)) == len(bad) + 1, 30), agent.log()
        assert _wait(lambda: _unique_events(probe.seen)[-1]["model"] == "flood-v2", 30)
    refused, activated = _updates(probe.seen)[:-1], _updates(probe.seen)[-1]
    for model, (_, reason) in zip(refused, bad, strict=True):
        assert model["last_update"]["result"] == "refused"
        assert reason in model["last_update"]["reason"]
        assert model["bundle_id"] == BUNDLE_ID  # a bad bundle never replaces a good one
    assert activated["last_update"]["result"] == "activated"
    assert activated["bundle_id"] == "flood-v2"
    assert agent.terminate() == 0
    # the active bundle survives a restart
    with Probe(mosquitto, [EVENTS, MODEL]) as probe:
        agent.start()
        fresh = probe.wait_for(lambda m: m.topic == MODEL and not m.retain, 30)
        assert fresh is not None, agent.log()
        assert json.loads(fresh.payload)["bundle_id"] == "flood-v2"
        assert probe.wait_for(_is(EVENTS), 30) is not None
    assert agent.terminate() == 0
    assert _unique_events(probe.seen)[0]["model"] == "flood-v2"
    assert "resuming with bundle flood-v2" in agent.log()


def _updates(messages: Iterable[Received]) -> list[dict[str, Any]]:
    return [m for m in _json(messages, MODEL) if "last_update" in m]


# --- 8, 9. offline on SIGKILL and on SIGTERM ----------------------------------------------------


def test_sigkill_makes_the_broker_publish_a_retained_offline(
    mosquitto: Broker, agents: AgentFactory
) -> None:
    agent = agents(mosquitto)
    with Probe(mosquitto, [STATUS]) as probe:
        agent.start()
        assert probe.wait_for(_is(STATUS, b"online"), 30) is not None, agent.log()
        assert agent.kill() == -signal.SIGKILL
        assert probe.wait_for(_is(STATUS, b"offline"), 15) is not None
    retained = _retained(mosquitto, STATUS)
    assert retained is not None
    assert (retained.payload, retained.retain) == (b"offline", True)


@pytest.mark.slow
def test_sigterm_during_an_attack_ends_it_exits_0_and_leaves_a_retained_offline(
    mosquitto: Broker, agents: AgentFactory
) -> None:
    agent = agents(mosquitto)
    with Probe(mosquitto, [STATUS, EVENTS]) as probe:
        agent.start()
        assert probe.wait_for(_is(STATUS, b"online"), 30) is not None, agent.log()
        raised = probe.wait_for(_is(EVENTS), 30)  # the flood is on: a detection is open
        assert raised is not None
        assert agent.terminate() == 0
        assert probe.wait_for(_is(STATUS, b"offline"), 5) is not None
    retained = _retained(mosquitto, STATUS)
    assert retained is not None
    assert (retained.payload, retained.retain) == (b"offline", True)
    # Shutdown ends the open detection and delivers that `end` before saying `offline`.
    new = json.loads(raised.payload)
    arrived = [
        (m.topic, json.loads(m.payload)["type"] if m.topic == EVENTS else m.payload)
        for m in probe.seen
    ]
    ending = arrived.index((EVENTS, "end"))
    assert arrived.index((STATUS, b"offline")) > ending
    assert _unique_events(probe.seen)[-1]["detection"] == new["detection"]
    assert agent.queued_events() == []  # nothing left for the next start
    log = agent.log()
    assert "signal SIGTERM: stopping" in log
    assert "agent stopped" in log
    assert "Traceback" not in log
