"""How an attack opens, as the event report says it: dense, a trickle, or too short to tell."""

from __future__ import annotations

import numpy as np

from training.events import DENSE_PACKETS, opening_seconds
from training.events_report import markdown

S = 1_000_000_000


def _ns(seconds: list[float]) -> np.ndarray:
    return (np.asarray(seconds) * S).astype(np.int64)


def test_a_dense_opening_is_the_span_of_the_first_40_packets() -> None:
    ts = _ns([10 + i * 0.001 for i in range(100)])
    assert opening_seconds(ts, int(ts[0]), int(ts[-1])) == 0.039


def test_a_slow_opening_is_longer_than_the_target_second() -> None:
    # 16 packets of an ordinary session over 2.76 s, then the attack proper at 1,000/s
    ts = _ns([i * 0.184 for i in range(16)] + [2.77 + i * 0.001 for i in range(200)])
    assert opening_seconds(ts, int(ts[0]), int(ts[-1])) == 2.793


def test_an_attack_shorter_than_40_packets_has_no_opening() -> None:
    ts = _ns([i * 0.01 for i in range(DENSE_PACKETS - 1)])
    assert opening_seconds(ts, int(ts[0]), int(ts[-1])) is None


def test_only_the_interval_s_own_packets_count() -> None:
    # the same label twice: 50 dense packets, a long pause, then 50 packets at 10/s
    first = [i * 0.001 for i in range(50)]
    second = [100 + i * 0.1 for i in range(50)]
    ts = _ns(first + second)
    assert opening_seconds(ts, int(ts[50]), int(ts[-1])) == 3.9
    assert opening_seconds(ts, int(ts[0]), int(ts[49])) == 0.039


def _result(malformed: str = "malformed-train.pcap", label: str = "malformed") -> dict:  # type: ignore[type-arg]
    """A report input: one trickle (``malformed``) and one attack shorter than 40 packets."""
    attack = {
        "label": label,
        "start_s": 0.0,
        "packets": 262,
        "detected": True,
        "seconds_to_alarm": 2.77,
        "packets_to_alarm": 56,
        "reported_label": "unknown",
        "reported_category": "unknown",
        "detections": 1,
        "incidents": 1,
    }
    result = {
        "bundle": "b",
        "step": {},
        "window": 8,
        "padding": "zeros",
        "summary": {
            "detected": 2,
            "attacks": 2,
            "within_target": 0,
            "median_packets_to_alarm": 56.0,
            "median_seconds_to_alarm": 2.77,
            "max_detections_per_attack": 1,
            "attacks_over_detection_target": 0,
            "max_incidents_per_attack": 1,
            "false_alarms": 0,
            "benign_hours": 0.0,
            "false_alarms_per_hour": None,
            "false_alarm_incidents": 0,
        },
        "captures": [
            {
                "capture": malformed,
                "attacks": [attack | {"opening_s": 2.793}],
                "benign_seconds": 0.0,
                "false_alarms": 0,
                "false_alarm_incidents": 0,
            },
            {
                "capture": "flood-train.pcap",
                "attacks": [attack | {"label": "flood", "opening_s": None}],
                "benign_seconds": 0.0,
                "false_alarms": 0,
                "false_alarm_incidents": 0,
            },
        ],
    }
    return result


def test_the_report_marks_a_trickle_and_a_short_attack() -> None:
    result = _result()
    text = markdown(result)
    assert "first 40 packets over (s)" in text
    assert "| malformed-train.pcap | malformed | 0.00 | 262 | 2.793 (trickle) | yes |" in text
    assert "| flood-train.pcap | flood | 0.00 | 262 | - (under 40) | yes |" in text


def test_a_name_with_a_bar_or_an_escape_keeps_the_report_s_rows_whole() -> None:
    text = markdown(_result("amp|dns-a.pcap", "amp|dns\x1b[2J"))
    row = next(line for line in text.splitlines() if line.startswith("| amp"))  # the attack's
    assert row.startswith("| amp\\|dns-a.pcap | amp\\|dns\\x1b[2J | 0.00 |")
    header = next(line for line in text.splitlines() if line.startswith("| capture | attack"))
    assert row.replace("\\|", "").count("|") == header.count("|")
