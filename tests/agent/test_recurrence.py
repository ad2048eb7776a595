"""Recurrences: a detection raised again by the same label on the same targets or from the same
sender, within ``recur_s`` of one that ended, carries that one's incident id; nothing else does."""

from __future__ import annotations

import numpy as np
import pytest

from agent.config import ConfigError, parse_config
from agent.decide import Decider, DecisionPolicy, Event, Evidence
from agent.recurrence import MAX_ENDED
from console.monitor_state import Detection, describe, ordinal

LABELS = ("benign", "syn_flood", "mqtt_bruteforce")
SECOND = 1_000_000_000
HOLD_S = 30.0


def _evidence(source: str, target: str = "10.0.0.5", port: int = 1883) -> Evidence:
    return Evidence(
        packets=50,
        top_sources=((source, 50),),
        top_destinations=((target, 50),),
        top_ports=((port, 50),),
    )


ATTACKER = _evidence("203.0.113.7")


def _decider(recur_s: float = 3600.0) -> Decider:
    policy = DecisionPolicy.from_manifest(
        LABELS, {}, {}, quiet_s=3.0, hold_s=HOLD_S, recur_s=recur_s
    )
    return Decider(policy, "m-1", "lan")


def _campaign(
    decider: Decider, bursts: list[tuple[str, Evidence]], pause_s: int = 120
) -> list[Event]:
    """Each burst: 10 one-second windows of ``label`` hits, then ``pause_s`` quiet ones."""
    events: list[Event] = []
    t = 0
    for label, evidence in bursts:
        for _ in range(10):
            row = np.zeros(len(LABELS))
            row[LABELS.index(label)] = 0.9
            events += decider.observe(t * SECOND, row, evidence)
            t += 1
        for _ in range(pause_s):
            events += decider.observe(t * SECOND, np.eye(len(LABELS))[0], evidence)
            t += 1
    return events


def _news(events: list[Event]) -> list[Event]:
    return [e for e in events if e.kind == "new"]


def test_bursts_paused_past_hold_are_detections_of_one_incident() -> None:
    events = _campaign(_decider(), [("syn_flood", ATTACKER)] * 3)
    first, second, third = _news(events)
    # each burst is its own detection, sent in full: a recurrence holds nothing back
    kinds = [e.kind for e in events if e.id == second.id]
    assert (kinds[0], kinds[-1]) == ("new", "end")
    assert [(e.recurrence, e.to_dict()["incident"]) for e in (first, second, third)] == [
        (0, first.id),
        (1, first.id),
        (2, first.id),
    ]
    # every event of a recurring detection names its incident, its end too
    assert {e.to_dict()["incident"] for e in events if e.id == third.id} == {first.id}


def test_a_spoofed_flood_recurs_on_the_same_target_and_port() -> None:
    bursts = [("syn_flood", _evidence(f"198.51.100.{i}")) for i in range(3)]
    assert [e.recurrence for e in _news(_campaign(_decider(), bursts))] == [0, 1, 2]


def test_a_scanner_back_on_another_host_recurs() -> None:
    bursts = [("syn_flood", _evidence("203.0.113.7", f"10.0.0.{i}", 22 + i)) for i in range(3)]
    assert [e.recurrence for e in _news(_campaign(_decider(), bursts))] == [0, 1, 2]


@pytest.mark.parametrize(
    ("label", "evidence"),
    [
        ("mqtt_bruteforce", ATTACKER),  # another label: another attack
        ("syn_flood", _evidence("192.0.2.9", port=22)),  # another sender, another service
    ],
)
def test_another_attack_on_the_gateway_is_its_own_incident(label: str, evidence: Evidence) -> None:
    first, second = _news(_campaign(_decider(), [("syn_flood", ATTACKER), (label, evidence)]))
    assert second.recurrence == 0
    assert second.to_dict()["incident"] == second.id != first.id


@pytest.mark.parametrize("recur_s", [0.0, 100.0])
def test_past_recur_or_with_recur_off_nothing_links(recur_s: float) -> None:
    # the second burst starts 130 s after the first one's last hit
    events = _campaign(_decider(recur_s), [("syn_flood", ATTACKER)] * 2)
    assert [e.recurrence for e in _news(events)] == [0, 0]


def test_a_chain_of_recurrences_keeps_the_first_detection_as_its_incident() -> None:
    # each burst is within recur_s of the one before, not of the first
    events = _campaign(_decider(recur_s=200.0), [("syn_flood", ATTACKER)] * 4)
    incidents = {e.to_dict()["incident"] for e in _news(events)}
    assert len(incidents) == 1
    assert [e.recurrence for e in _news(events)] == [0, 1, 2, 3]


def test_ended_detections_kept_for_recurrences_are_bounded() -> None:
    decider = _decider()
    bursts = [("syn_flood", _evidence(f"192.0.2.{i}", f"10.1.{i}.1", 1000 + i)) for i in range(80)]
    _campaign(decider, bursts, pause_s=40)
    assert len(decider._ended._ended) == MAX_ENDED
    # the oldest went first: the newest is still there to recur
    back = _campaign(decider, [bursts[-1]])
    assert _news(back)[0].recurrence == 1


def test_the_monitor_says_a_detection_is_back() -> None:
    detection = Detection("d2", "syn_flood", "flood", "lan", "m-1", 0.9, 10.0)
    detection.refresh({"incident": "d1-first", "recurrence": 2})
    assert describe(detection).endswith("[d2] back, 3rd time (incident d1-first)")
    # hostile values are ignored, not shown
    other = Detection("d3", "syn_flood", "flood", "lan", "m-1", 0.9, 10.0)
    other.refresh({"incident": ["x"], "recurrence": "lots"})
    other.refresh({"incident": "x", "recurrence": float("nan")})
    assert "back" not in describe(other)
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st",
    ]  # fmt: skip


@pytest.mark.parametrize("recur", [-1, 86_401])
def test_recur_is_checked_at_load(recur: float) -> None:
    data = {
        "agent": {"device_id": "gw-1"},
        "sources": [{"name": "lan", "kind": "pcap", "path": "x.pcap"}],
        "models": [{"name": "m", "bundle": "b.bundle", "source": "lan", "recur": recur}],
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert str(caught.value) == f"models[0].recur: must be 0..86400 seconds, got {float(recur)}"
