"""Scoring the demo's detections against the ground truth, and the agent config it writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.config import load_config
from console.demo import Layout, RunTruth, agent_config_text
from console.demo_view import Truth, render_summary, score_detections

T0 = 1_700_000_000.0


def _event(kind: str, det: str, label: str, start: float, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"{det}-{kind}-{start}",
        "type": kind,
        "detection": det,
        "label": label,
        "source": extra.pop("source", "traffic"),
        "start": start,
        "end": extra.pop("end", None),
        "window_end": extra.pop("window_end", start),
        "score": 0.9,
        **extra,
    }


def test_time_to_detect_false_alarms_and_wrong_labels() -> None:
    truths = [
        Truth("syn_flood", T0 + 15, T0 + 27, "traffic"),
        Truth("udp_scan", T0 + 32, T0 + 44, "traffic"),
        Truth("arp_spoof", T0 + 60, T0 + 72, "traffic"),
    ]
    events = [
        _event("new", "a", "syn_flood", T0 + 18),
        _event("end", "a", "syn_flood", T0 + 18, end=T0 + 29),
        _event("new", "b", "udp_flood", T0 + 35),  # alarmed, but the wrong class
        _event("end", "b", "udp_flood", T0 + 35, end=T0 + 40),
        _event("new", "c", "syn_flood", T0 + 100),  # overlaps nothing
        _event("update", "c", "syn_flood", T0 + 100, window_end=T0 + 104),
    ]
    detections, false_alarms = score_detections(
        truths, events, window_s={"traffic": 4.0}, step_s={"traffic": 1.0}
    )
    syn, scan, arp = detections
    assert syn.detected
    assert syn.seconds_to_detect == 3.0
    assert syn.steps_to_detect == 3
    assert not scan.detected
    assert scan.detected_as == "udp_flood"
    assert not arp.detected
    assert arp.detected_as == ""
    assert [a["detection"] for a in false_alarms] == ["c"]
    assert false_alarms[0]["end"] == T0 + 104  # an open detection ends at its last window


def test_an_attack_that_joins_an_open_detection_is_detected() -> None:
    truths = [
        Truth("syn_flood", T0 + 15, T0 + 27, "traffic"),
        Truth("tcp_syn_scan", T0 + 30, T0 + 42, "traffic"),
    ]
    events = [
        _event("new", "a", "syn_flood", T0 + 17),
        _event("update", "a", "syn_flood", T0 + 17, window_end=T0 + 22),
        _event("update", "a", "tcp_syn_scan", T0 + 17, window_end=T0 + 32),  # joined
        _event("end", "a", "tcp_syn_scan", T0 + 17, end=T0 + 45),
        _event("new", "z", "udp_flood", T0 + 100),
        _event("update", "z", "mqtt_bruteforce", T0 + 100, window_end=T0 + 101),
    ]
    detections, false_alarms = score_detections(
        truths, events, window_s={"traffic": 4.0}, step_s={"traffic": 1.0}
    )
    assert [d.detected for d in detections] == [True, True]
    assert detections[1].seconds_to_detect == 2.0
    assert [a["detection"] for a in false_alarms] == ["z"]  # one per detection, not per label


def test_a_window_holding_the_attacks_last_steps_is_no_false_alarm() -> None:
    truths = [Truth("syn_flood", T0 + 15, T0 + 27, "traffic")]
    late = [_event("new", "a", "syn_flood", T0 + 30)]  # window (26, 30] still holds step 26
    detections, false_alarms = score_detections(
        truths, late, window_s={"traffic": 4.0}, step_s={"traffic": 1.0}
    )
    assert detections[0].detected
    assert false_alarms == []


def test_anomaly_sources_accept_any_alarm_label() -> None:
    truths = [Truth("stuck_at", T0 + 100, T0 + 150, "telemetry")]
    events = [_event("new", "a", "anomaly", T0 + 110, source="telemetry")]
    detections, _ = score_detections(
        truths,
        events,
        window_s={"telemetry": 8.0},
        step_s={"telemetry": 1.0},
        any_label=("telemetry",),
    )
    assert detections[0].detected
    assert detections[0].seconds_to_detect == 10.0
    strict, _ = score_detections(
        truths, events, window_s={"telemetry": 8.0}, step_s={"telemetry": 1.0}
    )
    assert not strict[0].detected


def test_duplicate_deliveries_do_not_double_count() -> None:
    truths = [Truth("syn_flood", T0, T0 + 10, "traffic")]
    new = _event("new", "a", "syn_flood", T0 + 2)
    detections, false_alarms = score_detections(
        truths, [new, dict(new)], window_s={"traffic": 4.0}, step_s={"traffic": 1.0}
    )
    assert detections[0].detected
    assert false_alarms == []


def test_render_summary_lists_every_attack_and_model() -> None:
    detections, alarms = score_detections(
        [Truth("syn_flood", T0, T0 + 10, "traffic")],
        [_event("new", "a", "syn_flood", T0 + 2), _event("new", "z", "udp_flood", T0 + 50)],
        window_s={"traffic": 4.0},
        step_s={"traffic": 1.0},
    )
    summary = {
        "detections": [d.__dict__ for d in detections],
        "false_alarms": alarms,
        "models": {
            "traffic-cnn": {
                "bundle_id": "cnn-int8-x",
                "bundle_bytes": 40000,
                "model_bytes": 17000,
                "latency_us_p50": 15.0,
                "latency_us_p99": 20.0,
                "macro_f1": 0.9,
                "test_windows": 60,
                "per_class": {"benign": {"precision": 1.0, "recall": 0.9, "f1": 0.95}},
            }
        },
        "agent": {
            "packets": 100,
            "rss_mib_max": 80.0,
            "latency_ms_p50": 0.02,
            "latency_ms_p99": 0.1,
            "events": 3,
        },
        "stages": {"train models": 12.5},
    }
    text = render_summary(summary)
    assert "Detected 1 of 1" in text
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in text.splitlines()]
    assert ["traffic", "syn_flood", "yes", "2.00", "2", "syn_flood"] in rows
    assert "False alarms (detections overlapping no attack or fault): 1" in text
    assert "udp_flood" in text
    assert "cnn-int8-x" in text
    assert "80.0 MiB" in text
    assert "3 events received over MQTT." in text  # a summary written before incidents
    summary["agent"] |= {"detections": 2, "incidents": 1}
    assert "3 events received over MQTT: 2 detections in 1 incidents." in render_summary(summary)


def test_the_agent_config_the_demo_writes_is_valid(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    pcap, csv = tmp_path / "traffic.pcap", tmp_path / "telemetry.csv"
    pcap.write_bytes(b"")
    csv.write_text("timestamp,temperature,pressure\n")
    truth = RunTruth(pcap, 0, csv, ("temperature", "pressure"), (), ())
    path = tmp_path / "agent.toml"
    path.write_text(agent_config_text(layout, truth, "127.0.0.1", 18830, tls=True))
    config = load_config(path)
    assert [s.kind for s in config.sources] == ["pcap", "csv", "host"]
    assert [(m.name, m.source) for m in config.models] == [
        ("traffic-cnn", "traffic"),
        ("telemetry-gru", "telemetry"),
    ]
    assert config.mqtt.port == 18830
    assert config.mqtt.tls is not None
    assert config.agent.state_dir == str(tmp_path / "agent-state")
    assert config.agent.trusted_keys == (str(tmp_path / "keys" / "demo.pub"),)


def test_the_live_view_and_the_summary_show_a_publishers_label_escaped() -> None:
    # the demo's broker is anonymous on loopback: any local client may publish an event
    import io

    from console.demo_view import LiveView, _table

    out = io.StringIO()
    view = LiveView("127.0.0.1", 1, "gw", out=out)
    hostile = "syn\x1b]52;c;aWQ=\x07\x1b[2J" + "x" * 500
    view._event(_event("new", "a", hostile, T0, source="t\nforged line"))
    printed = out.getvalue()
    assert printed.count("\n") == 1
    assert printed[:-1].isprintable()
    assert "syn\\x1b]52;c;aWQ=\\x07\\x1b[2J" in printed
    assert len(printed) < 200
    table = "\n".join(_table(["source", "label"], [("traffic", hostile)]))  # the summary's
    assert "\x1b" not in table
    assert len(table) < 300


def test_a_summary_table_without_rows_is_its_header() -> None:
    from console.demo_view import _table

    assert _table(["source", "label"], []) == ["| source | label |", "|--------|-------|"]
