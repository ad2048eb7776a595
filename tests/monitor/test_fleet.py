"""The monitor's fleet state, message by message (no broker needed)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from console.monitor_state import Fleet
from console.monitor_view import ScreenView, render

NOW = 1_800_000_000.0


def _event(message_id: str, phase: str, detection: str, **fields: Any) -> bytes:
    body = {"id": message_id, "type": phase, "detection": detection, **fields}
    return json.dumps(body).encode()


def test_duplicates_by_id_are_dropped_and_end_closes_a_detection() -> None:
    fleet = Fleet()
    first = fleet.apply("iotids/gw/events", _event("a", "new", "d1", label="scan"), NOW)
    again = fleet.apply("iotids/gw/events", _event("a", "new", "d1", label="scan"), NOW)
    closed = fleet.apply("iotids/gw/events", _event("b", "end", "d1", end=NOW + 5), NOW + 5)
    gateway = fleet.gateways["gw"]
    assert first == ["gw detection new ?: scan score ? [d1]"]
    assert again == []
    assert closed
    assert closed[0].startswith("gw detection end ?: scan")
    assert gateway.active == {}
    assert gateway.recent["d1"].end == NOW + 5
    assert (gateway.events, gateway.duplicates) == (2, 1)


def test_the_same_message_id_on_two_gateways_is_not_a_duplicate() -> None:
    fleet = Fleet()
    fleet.apply("iotids/a/events", _event("x", "new", "d"), NOW)
    fleet.apply("iotids/b/events", _event("x", "new", "d"), NOW)
    assert len(fleet.gateways["a"].active) == len(fleet.gateways["b"].active) == 1


def test_an_update_for_a_missed_new_still_opens_the_detection() -> None:
    fleet = Fleet()
    fleet.apply("iotids/gw/events", _event("u", "update", "d9", score=0.0, label="flood"), NOW)
    detection = fleet.gateways["gw"].active["d9"]
    assert detection.label == "flood"
    assert detection.score == 0.0


def test_recent_detections_are_bounded_newest_first() -> None:
    fleet = Fleet(recent=3)
    for n in range(5):
        fleet.apply("iotids/gw/events", _event(f"m{n}", "new", f"d{n}"), NOW + n)
    assert list(fleet.gateways["gw"].recent) == ["d4", "d3", "d2"]
    assert len(fleet.gateways["gw"].active) == 5


def test_a_repeated_retained_status_is_not_a_change() -> None:
    # amqtt may hand a new subscriber the same retained message twice.
    fleet = Fleet()
    assert fleet.apply("iotids/gw/status", b"online", NOW, retained=True) == ["gw online"]
    assert fleet.apply("iotids/gw/status", b"online", NOW, retained=True) == []
    assert fleet.apply("iotids/gw/status", b"offline", NOW + 1) == ["gw offline"]
    assert fleet.gateways["gw"].last_seen == NOW + 1


def test_stats_totals_nested_counters_and_ignores_unknown_shapes() -> None:
    fleet = Fleet()
    stats = {
        "packets_per_s": 50.5,
        "drops": {"kernel": 2, "queue": 3},
        "malformed": {"truncated": 4},
        "latency_ms_p50": None,
        "cpu_percent": "busy",
        "outbox": {"depth": 9},
        "time": NOW - 3,
    }
    lines = fleet.apply("iotids/gw/stats", json.dumps(stats).encode(), NOW)
    figures = fleet.gateways["gw"].stats
    assert lines == ["gw stats 50.5 pkt/s, latency p50 - ms p99 - ms, drops 5, outbox 9"]
    assert (figures["drops"], figures["malformed"], figures["outbox_depth"]) == (5, 4, 9)
    assert figures["latency_ms_p50"] is None
    assert figures["cpu_percent"] is None
    assert fleet.gateways["gw"].last_seen == NOW - 3


def test_model_lines_carry_the_refusal_reason() -> None:
    fleet = Fleet()
    body = {"bundle_id": "cnn-1", "last_update": {"result": "refused", "reason": "bad signature"}}
    payload = json.dumps(body).encode()
    assert fleet.apply("iotids/gw/model", payload, NOW, retained=True) == [
        "gw model cnn-1 (last update refused: bad signature)"
    ]
    assert fleet.apply("iotids/gw/model", payload, NOW, retained=True) == []


def test_model_lines_say_which_kernels_run_it_and_ignore_other_values() -> None:
    fleet = Fleet()
    body = {"bundle_id": "cnn-1", "kernels": "builtin"}
    lines = fleet.apply("iotids/gw/model", json.dumps(body).encode(), NOW, retained=True)
    assert lines == ["gw model cnn-1 on builtin kernels"]
    # a hostile or unknown value is not echoed
    body = {"bundle_id": "cnn-2", "kernels": "\u001b[2Jfast" * 100}
    lines = fleet.apply("iotids/gw/model", json.dumps(body).encode(), NOW, retained=True)
    assert lines == ["gw model cnn-2"]


def test_model_lines_name_the_labels_a_site_calibration_silenced() -> None:
    fleet = Fleet()
    calibration = {
        "state": "calibrated",
        "thresholds": {"syn_flood": 0.7, "amp": 1.00390625, "unknown": 1.00390625, "\u001b[2J": 2},
        "start_quiet_windows": 10,
    }
    body = {"bundle_id": "cnn-1", "calibration": calibration}
    lines = fleet.apply("iotids/gw/model", json.dumps(body).encode(), NOW, retained=True)
    assert lines == ["gw model cnn-1, calibrated (silenced amp, unknown; first 10 windows quiet)"]
    calibration["attack_free"] = True
    lines = fleet.apply("iotids/gw/model", json.dumps(body).encode(), NOW, retained=True)
    assert lines == [
        "gw model cnn-1, calibrated (vouched attack-free; silenced amp, unknown; first 10 "
        "windows quiet)"
    ]
    body["calibration"] = {"state": "collecting"}
    lines = fleet.apply("iotids/gw/model", json.dumps(body).encode(), NOW, retained=True)
    assert lines == ["gw model cnn-1, calibrating"]
    body["calibration"] = {"state": "calibrated", "thresholds": "x", "start_quiet_windows": True}
    lines = fleet.apply("iotids/gw/model", json.dumps(body).encode(), NOW, retained=True)
    assert lines == ["gw model cnn-1, calibrated"]


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        ("iotids/gw/events", b"not json"),
        ("iotids/gw/events", b"[1, 2]"),
        ("iotids/gw/events", b'{"type": "new"}'),
        ("iotids/gw/events", b'{"id": "x", "type": "started"}'),
        ("iotids/gw/stats", b"\xff\xfe"),
        ("iotids/gw/events", b'{"id": "x", "type": "new", "label": "\\ud800"}'),
    ],
)
def test_malformed_payloads_are_counted_not_applied(topic: str, payload: bytes) -> None:
    fleet = Fleet()
    assert fleet.apply(topic, payload, NOW) == []
    assert fleet.malformed == 1
    assert fleet.gateways["gw"].active == {}


def test_topics_outside_the_prefix_or_contract_are_ignored() -> None:
    fleet = Fleet(prefix="plant7/")
    assert fleet.subscriptions() == [
        f"plant7/+/{k}" for k in ("status", "events", "stats", "model")
    ]
    assert fleet.apply("iotids/gw/status", b"online", NOW) == []
    assert fleet.apply("plant7/gw/model/set", b"x", NOW) == []
    assert fleet.apply("plant7//status", b"online", NOW) == []
    assert fleet.gateways == {}
    assert fleet.apply("plant7/gw/status", b"online", NOW) == ["gw online"]


def test_the_screen_view_redraws_in_place_and_restores_the_terminal() -> None:
    fleet = Fleet()
    fleet.apply("iotids/gw-1/status", b"online", NOW)
    fleet.apply("iotids/gw-1/events", _event("a", "new", "d1", label="flood", start=NOW), NOW)
    out = io.StringIO()
    view = ScreenView(out, lambda: "HEADER")
    view.tick(fleet, NOW)
    view.tick(fleet, NOW + 0.5)  # nothing changed, not a second later: no redraw
    view.changed(["gw-1 offline"], fleet, NOW + 0.6)
    view.tick(fleet, NOW + 0.6)
    view.close()
    text = out.getvalue()
    assert text.startswith("\x1b[?1049h")
    assert text.endswith("\x1b[?1049l")
    assert text.count("\x1b[H\x1b[2J") == 2
    assert "\x1b[32monline" in text  # green
    assert "flood" in text
    assert "08:00:00  gw-1 offline\n" in text.split("ACTIVITY")[-1]


def test_render_lists_active_events_and_ended_detections() -> None:
    fleet = Fleet()
    fleet.apply("iotids/gw-1/events", _event("a", "new", "d1", label="flood", start=NOW), NOW)
    fleet.apply("iotids/gw-1/events", _event("b", "new", "d2", label="scan", start=NOW + 1), NOW)
    fleet.apply("iotids/gw-1/events", _event("c", "end", "d2", end=NOW + 2), NOW + 2)
    text = render(fleet, NOW + 10, "HEADER")
    assert "\x1b" not in text
    assert "ACTIVE EVENTS (1)" in text
    recent = text.split("RECENT DETECTIONS")[1].splitlines()[1:]
    assert "scan" in recent[0]
    assert recent[0].endswith("ended 08:00:02")
    assert "flood" in recent[1]
    assert recent[1].endswith("active")


def test_a_snapshot_names_every_figure_even_before_stats_arrive() -> None:
    fleet = Fleet()
    fleet.apply("iotids/gw/status", b"online", NOW, retained=True)
    state = fleet.snapshot(NOW)["gateways"]["gw"]
    assert state["status"] == "online"
    assert state["last_seen"] is None  # a retained status says nothing about when
    assert state["packets_per_s"] is None
    assert state["outbox_depth"] is None
    assert state["active_events"] == []
    assert json.loads(json.dumps(state)) == state


def test_a_detection_shows_its_family_first_then_its_labels() -> None:
    fleet = Fleet()
    fleet.apply(
        "iotids/gw/events", _event("a", "new", "d1", label="syn_flood", category="flood"), NOW
    )
    labels = {"syn_flood": 40, "mqtt_bruteforce": 3, "junk": "many", "inf": float("inf")}
    lines = fleet.apply(
        "iotids/gw/events",
        _event("b", "update", "d1", label="mqtt_bruteforce", category="flood", labels=labels),
        NOW,
    )
    assert lines == ["gw detection update flood: mqtt_bruteforce (also syn_flood) score ? [d1]"]
    detection = fleet.gateways["gw"].active["d1"]
    assert detection.as_dict()["labels"] == {"syn_flood": 40, "mqtt_bruteforce": 3}
