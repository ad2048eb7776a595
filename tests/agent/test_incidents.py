"""One incident per attack: labels that change inside an open detection update it, bounded in
time (``merge_horizon_s``) and by evidence (same destination addresses or ports)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.config import ConfigError, parse_config
from agent.decide import MAX_DORMANT, Decider, DecisionPolicy, Event, Evidence, Targets

LABELS = ("benign", "syn_flood", "mqtt_bruteforce", "snmpamp")
SECOND = 1_000_000_000
VICTIM = Evidence(packets=50, top_destinations=(("10.0.0.5", 50),), top_ports=((1883, 50),))
OTHER = Evidence(packets=50, top_destinations=(("10.0.0.9", 50),), top_ports=((22, 50),))


def _decider(horizon: float = 300.0, clear_m: int = 3) -> Decider:
    policy = DecisionPolicy.from_manifest(
        LABELS,
        {},  # an old bundle without categories: families come from the labels
        {},
        raise_k=2,
        raise_n=3,
        clear_m=clear_m,
        merge_horizon_s=horizon,
    )
    return Decider(policy, "m-1", "lan")


def _row(label: str | None) -> np.ndarray:
    row = np.zeros(len(LABELS))
    row[LABELS.index(label or "benign")] = 0.9
    return row


def _run(decider: Decider, plan: list[tuple[str | None, Evidence]], t0: int = 0) -> list[Event]:
    events: list[Event] = []
    for t, (label, evidence) in enumerate(plan, start=t0):
        events += decider.observe(t * SECOND, _row(label), evidence)
    return events


def test_a_second_label_on_the_same_target_updates_the_open_detection() -> None:
    decider = _decider()
    plan = [("syn_flood", VICTIM)] * 4 + [("mqtt_bruteforce", VICTIM)] * 4 + [(None, VICTIM)] * 3
    events = _run(decider, plan)
    assert [e.kind for e in events] == ["new", "update", "end"]
    assert len({e.id for e in events}) == 1
    new, joined, end = events
    assert (new.label, new.category) == ("syn_flood", "flood")
    # the update carries the new label, its family and the histogram so far
    assert (joined.label, joined.category) == ("mqtt_bruteforce", "bruteforce")
    payload = joined.to_dict()
    assert payload["labels"] == {"syn_flood": 4, "mqtt_bruteforce": 1}
    assert payload["type"] == "update"
    assert payload["detection"] == new.id
    assert dict(end.labels) == {"syn_flood": 4, "mqtt_bruteforce": 4}
    assert end.windows == len(plan) - 1


def test_flapping_labels_are_one_detection_with_bounded_updates() -> None:
    decider = _decider()
    flap = ["snmpamp", "syn_flood", "mqtt_bruteforce"] * 40
    events = _run(decider, [(label, VICTIM) for label in flap] + [(None, VICTIM)] * 3)
    kinds = [e.kind for e in events]
    assert kinds.count("new") == 1
    assert kinds.count("end") == 1
    # one update per label joining, then one every update_every windows: not one per window
    assert kinds.count("update") <= 2 + len(flap) // 5 + 1
    # raised on its second window (two windows with attack hits), every later hit counted
    assert events[0].time_ns == SECOND
    assert sum(dict(events[-1].labels).values()) == len(flap) - 1
    # the histogram is bounded by the model's labels
    assert len(events[-1].labels) == 3


def test_another_target_opens_its_own_detection() -> None:
    decider = _decider()
    plan = [("syn_flood", VICTIM)] * 3 + [("mqtt_bruteforce", OTHER)] * 3
    events = [e for e in _run(decider, plan) if e.kind == "new"]
    assert [(e.label, e.time_ns // SECOND) for e in events] == [
        ("syn_flood", 1),
        ("mqtt_bruteforce", 4),  # debounced on its own: two hits
    ]
    assert events[0].id != events[1].id


def test_past_the_horizon_a_new_label_opens_a_new_detection() -> None:
    decider = _decider(horizon=5.0)
    plan = [("syn_flood", VICTIM)] * 8 + [("mqtt_bruteforce", VICTIM)] * 3
    events = _run(decider, plan)
    assert [(e.kind, e.label) for e in events] == [
        ("new", "syn_flood"),
        ("update", "syn_flood"),
        ("new", "mqtt_bruteforce"),
        ("end", "syn_flood"),
    ]
    # merging off: every label is its own detection
    off = _run(_decider(horizon=0.0), [("syn_flood", VICTIM)] * 3 + [("snmpamp", VICTIM)] * 3)
    assert [(e.kind, e.label) for e in off] == [
        ("new", "syn_flood"),
        ("new", "snmpamp"),
        ("end", "syn_flood"),
    ]


def test_an_idle_incident_ends_and_the_next_attack_is_new() -> None:
    decider = _decider(clear_m=2)
    plan = [("syn_flood", VICTIM)] * 3 + [(None, VICTIM)] * 2 + [("mqtt_bruteforce", VICTIM)] * 3
    events = _run(decider, plan)
    assert [e.kind for e in events] == ["new", "end", "new"]
    assert events[0].id == events[1].id != events[2].id


def test_benign_never_opens_or_extends_an_incident() -> None:
    decider = _decider(clear_m=2)
    assert _run(decider, [(None, VICTIM)] * 5) == []
    events = _run(decider, [("syn_flood", VICTIM)] * 3 + [(None, VICTIM)] * 2)
    assert [e.kind for e in events] == ["new", "end"]  # benign windows count as clean


def test_targets_overlap_is_by_address_then_port_then_no_evidence() -> None:
    a = Targets(("10.0.0.5",), (1883,))
    assert a.overlaps(Targets(("10.0.0.5", "10.0.0.7"), (22,)))
    assert not a.overlaps(Targets(("10.0.0.6",), (1883,)))  # addresses decide when both have one
    assert a.overlaps(Targets((), (1883,)))  # no address on one side: ports decide
    assert not a.overlaps(Targets((), (22,)))
    assert a.overlaps(Targets())  # telemetry / host windows carry no packets
    grown = Targets().add(VICTIM).add(OTHER)
    assert grown.addresses == ("10.0.0.9", "10.0.0.5")
    many = Evidence(top_ports=tuple((p, 1) for p in range(100)))
    assert len(Targets().add(many).add(many).ports) <= Targets.MAX_TARGETS


def _packet_decider(quiet: float, update_s: float) -> Decider:
    """Windows 10 ms apart, as 20-packet steps of a 2,000 packet/s flood."""
    policy = DecisionPolicy.from_manifest(
        LABELS, {}, {}, clear_m=3, quiet_s=quiet, update_s=update_s
    )
    return Decider(policy, "m-1", "lan")


def _fast(decider: Decider, plan: list[str | None]) -> list[Event]:
    events: list[Event] = []
    for t, label in enumerate(plan):
        events += decider.observe(t * 10_000_000, _row(label), VICTIM)
    return events


def test_a_pause_shorter_than_quiet_does_not_end_the_detection() -> None:
    # 1 s of flood, a 0.5 s pause (50 clean windows), 1 s of flood, then 4 s of calm
    plan = ["syn_flood"] * 100 + [None] * 50 + ["syn_flood"] * 100 + [None] * 400
    quiet = [e.kind for e in _fast(_packet_decider(quiet=3.0, update_s=0.0), plan)]
    assert quiet.count("new") == 1
    assert quiet.count("end") == 1
    eager = [e.kind for e in _fast(_packet_decider(quiet=0.0, update_s=0.0), plan)]
    assert eager.count("new") == 2  # clear_m windows alone end it during the pause


def test_updates_are_bounded_in_time_under_packet_steps() -> None:
    plan: list[str | None] = ["syn_flood"] * 3000  # 30 s of 10 ms windows
    events = _fast(_packet_decider(quiet=3.0, update_s=5.0), plan)
    updates = [e for e in events if e.kind == "update"]
    assert 5 <= len(updates) <= 6  # one per 5 s, not one per 5 windows (600)
    unbounded = _fast(_packet_decider(quiet=3.0, update_s=0.0), plan)
    assert len(unbounded) > 500


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("merge_horizon", -1, "models[0].merge_horizon: must be 0..86400 seconds, got -1"),
        ("quiet", float("nan"), "models[0].quiet: must be a finite number, got nan"),
        ("quiet", "3s", "models[0].quiet: must be a number, got a string"),
    ],
)
def test_merge_settings_are_checked_at_load(key: str, value: object, message: str) -> None:
    model = {"name": "m", "bundle": "b.bundle", "source": "lan", key: value}
    data = {
        "agent": {"device_id": "gw-1"},
        "sources": [{"name": "lan", "kind": "pcap", "path": "x.pcap"}],
        "models": [model],
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert str(caught.value).startswith(message), str(caught.value)


def test_the_agent_config_reaches_the_policy() -> None:
    data = {
        "agent": {"device_id": "gw-1"},
        "sources": [{"name": "lan", "kind": "pcap", "path": "x.pcap"}],
        "models": [
            {"name": "m", "bundle": "b", "source": "lan", "merge_horizon": 60, "quiet": 0.5}
        ],
    }
    model = parse_config(data).models[0]
    assert (model.merge_horizon, model.quiet) == (60.0, 0.5)


def _held(hold: float = 20.0, quiet: float = 3.0) -> Decider:
    """1 s windows; quiet after 3 s without a hit, dormant until ``hold`` s after the last hit."""
    policy = DecisionPolicy.from_manifest(
        LABELS, {}, {}, clear_m=3, quiet_s=quiet, update_s=5.0, hold_s=hold
    )
    return Decider(policy, "m-1", "lan")


def _burst(label: str | None, seconds: int, evidence: Evidence = VICTIM) -> list[Any]:
    return [(label, evidence)] * seconds


def test_a_pause_within_hold_resumes_the_same_detection() -> None:
    decider = _held(hold=20.0)
    # the model fires in bursts 10 s apart on one attack: one detection, resumed each time
    plan = (_burst("snmpamp", 4) + _burst(None, 10)) * 3 + _burst(None, 30)
    events = _run(decider, plan)
    assert [e.kind for e in events] == ["new", "update", "update", "end"]
    assert len({e.id for e in events}) == 1
    resumed = events[1]
    assert (resumed.time_ns // SECOND, resumed.label) == (14, "snmpamp")
    end = events[-1]
    # decided once hold had passed since the last hit (at 31 s), ended at that last hit
    assert end.ended_ns == 31 * SECOND
    assert end.time_ns == 51 * SECOND
    assert end.to_dict()["end"] == 31.0
    assert dict(end.labels) == {"snmpamp": 12}
    # without hold (the quiet end alone) each burst is its own detection
    kinds = [e.kind for e in _run(_held(hold=0.0), plan)]
    assert (kinds.count("new"), kinds.count("end")) == (3, 3)


def test_a_different_label_after_the_pause_is_a_new_detection() -> None:
    decider = _held(hold=60.0)
    # two attacks on one victim, 5 s apart: two detections, the first ended at its last hit
    plan = _burst("syn_flood", 6) + _burst(None, 5) + _burst("mqtt_bruteforce", 6)
    events = _run(decider, plan)
    assert [(e.kind, e.label) for e in events] == [("new", "syn_flood"), ("new", "mqtt_bruteforce")]
    assert events[1].time_ns == 12 * SECOND
    first, second = events[0].id, events[1].id
    assert first != second
    # the first waits out its hold, then ends at its last hit; the second ends after its own
    later = _run(decider, _burst(None, 80), t0=len(plan))
    assert [(e.kind, e.id, e.ended_ns) for e in later] == [
        ("end", first, 5 * SECOND),
        ("end", second, 16 * SECOND),
    ]
    # a single stray window of another label neither ends nor opens anything
    stray = _run(_held(hold=60.0), _burst("syn_flood", 3) + _burst(None, 5) + [("snmpamp", VICTIM)])
    assert [e.kind for e in stray] == ["new"]


def test_the_same_label_on_other_targets_does_not_resume() -> None:
    decider = _held(hold=60.0)
    plan = _burst("syn_flood", 3) + _burst(None, 5) + _burst("syn_flood", 3, OTHER)
    events = _run(decider, plan)
    assert [e.kind for e in events] == ["new", "new"]
    assert events[0].id != events[1].id
    # the first, on its own victim, still ends when its hold runs out, at its last hit
    later = _run(decider, _burst(None, 60), t0=len(plan))
    assert [(e.kind, e.id, e.ended_ns) for e in later] == [
        ("end", events[0].id, 2 * SECOND),
        ("end", events[1].id, 10 * SECOND),
    ]


def test_shutdown_ends_a_dormant_detection_at_its_last_hit() -> None:
    decider = _held(hold=60.0)
    events = _run(decider, _burst("syn_flood", 4) + _burst(None, 10))
    assert [e.kind for e in events] == ["new"]
    assert decider.active_labels == ["syn_flood"]  # dormant is still open: calibration waits
    ended = decider.close(14 * SECOND)
    assert [(e.kind, e.id, e.ended_ns, e.time_ns) for e in ended] == [
        ("end", events[0].id, 3 * SECOND, 14 * SECOND)
    ]
    assert decider.active_labels == []


@pytest.mark.parametrize(("hold", "message"), [(-1, "got -1.0"), (3601, "got 3601.0")])
def test_hold_is_checked_at_load(hold: float, message: str) -> None:
    model = {"name": "m", "bundle": "b.bundle", "source": "lan", "hold": hold}
    data = {
        "agent": {"device_id": "gw-1"},
        "sources": [{"name": "lan", "kind": "pcap", "path": "x.pcap"}],
        "models": [model],
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert str(caught.value) == f"models[0].hold: must be 0..3600 seconds, {message}"


def test_only_the_main_label_resumes_a_dormant_detection() -> None:
    decider = _held(hold=60.0)
    # a flood whose last window reads as mqtt_bruteforce, then a real brute force 5 s on
    plan = _burst("syn_flood", 6) + _burst("mqtt_bruteforce", 1) + _burst(None, 4)
    plan += _burst("mqtt_bruteforce", 4)
    events = _run(decider, plan)
    assert [(e.kind, e.label) for e in events] == [
        ("new", "syn_flood"),
        ("update", "mqtt_bruteforce"),
        ("new", "mqtt_bruteforce"),
    ]
    assert events[2].id != events[0].id


def test_a_stray_raise_in_a_pause_does_not_split_the_attack() -> None:
    decider = _held(hold=60.0)
    # a flood in bursts; in one pause the model raises another label for a few windows
    plan = _burst("syn_flood", 6) + _burst(None, 5) + _burst("mqtt_bruteforce", 3)
    plan += _burst(None, 8) + _burst("syn_flood", 6)
    events = _run(decider, plan)
    assert [(e.kind, e.label) for e in events[:3]] == [
        ("new", "syn_flood"),
        ("new", "mqtt_bruteforce"),
        ("update", "syn_flood"),
    ]
    flood, stray, resumed = events[:3]
    assert resumed.time_ns == 22 * SECOND  # the next burst's first window
    # it resumes the flood's detection, and the burst goes on updating that one
    assert {e.id for e in events[2:]} == {flood.id} != {stray.id}


def test_the_old_label_joins_the_new_detection_while_it_is_active() -> None:
    decider = _held(hold=60.0)
    # a brute force follows the flood; the flood's label still hits now and then inside it
    plan = _burst("syn_flood", 6) + _burst(None, 5) + _burst("mqtt_bruteforce", 4)
    plan += [("syn_flood", VICTIM), *_burst("mqtt_bruteforce", 4)]
    events = _run(decider, plan)
    assert [(e.kind, e.label) for e in events] == [
        ("new", "syn_flood"),
        ("new", "mqtt_bruteforce"),
        ("update", "syn_flood"),
    ]
    assert events[2].id == events[1].id  # not a resumption of the flood's detection


def test_dormant_detections_are_bounded() -> None:
    decider = _held(hold=3600.0)
    events: list[Event] = []
    for n in range(MAX_DORMANT + 5):  # short attacks on ever new victims, each then dormant
        victim = Evidence(packets=50, top_destinations=((f"10.1.0.{n}", 50),), top_ports=((n, 50),))
        events += _run(decider, _burst("syn_flood", 3, victim) + _burst(None, 5), t0=n * 8)
    ends = [e for e in events if e.kind == "end"]
    # checked at each raise: the last one's leaves MAX_DORMANT of the dormant before it, the
    # longest quiet ended early, at their last hit
    assert len(ends) == 4
    assert [e.id for e in ends] == [e.id for e in events if e.kind == "new"][:4]
    assert all(e.ended_ns is not None and e.ended_ns < e.time_ns for e in ends)


@pytest.mark.parametrize(
    ("flag", "hold", "top"),
    [
        *(("--hold", value, 3600) for value in ("-1", "3601", "nan", "soon")),
        *(("--recur", value, 86400) for value in ("-1", "86401", "soon")),
    ],
)
def test_replay_refuses_a_hold_the_config_would_refuse(flag: str, hold: str, top: int) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent",
            "replay",
            *("--bundle", "b", "--capture", "c"),
            flag,
            hold,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].endswith(f"argument {flag}: {_why(hold, top)}")


def _why(hold: str, top: int) -> str:
    return (
        f"expected seconds, got {hold!r}"
        if hold == "soon"
        else f"must be 0..{top} seconds, got {hold}"
    )


def test_replay_hold_reaches_the_debounce() -> None:
    import argparse

    from agent.__main__ import _debounce
    from agent.inference import Debounce

    args = argparse.Namespace(
        raise_k=None, raise_n=None, clear_m=None, raise_score=None, hold=0.0, recur=60.0
    )
    assert (_debounce(args, Debounce).hold, _debounce(args, Debounce).recur) == (0.0, 60.0)
    args.hold = args.recur = None
    assert _debounce(args, Debounce).hold == Debounce().hold
    assert _debounce(args, Debounce).recur == Debounce().recur
