"""Classes with too few windows are named with their recordings; absent classes are reported."""

from __future__ import annotations

import numpy as np

from training import split
from training.datasets import Dataset
from training.evaluate import classification_metrics
from training.shortfall import absent_from_test, shortfalls


def _dataset() -> Dataset:
    labels = np.array(["benign"] * 300 + ["arp"] * 3, np.str_)
    return Dataset(
        kind="captures",
        name="traffic",
        columns=["a"],
        x=np.zeros((303, 1), np.float32),
        label_names=labels,
        sequential=True,
        groups=np.array([0] * 300 + [1] * 3, np.int64),
        group_names=["benign-x.pcap", "arp-x.pcap"],
        options={"step": "20p"},
        recordings={
            "benign-x.pcap": {"packets": 6000, "seconds": 600.0, "steps": 300},
            "arp-x.pcap": {"packets": 165, "seconds": 30.0, "steps": 3},
        },
    )


def test_a_class_without_windows_names_its_recordings_and_a_step_that_fits() -> None:
    counts = {
        "train": {"benign": 200, "arp": 0},
        "val": {"benign": 30, "arp": 0},
        "test": {"benign": 60, "arp": 0},
    }
    messages = shortfalls(_dataset(), counts, window=8, padding="zeros")
    assert len(messages) == 1
    text = messages[0]
    assert "'arp'" in text
    assert "train 0" in text
    assert "arp-x.pcap (165 packets over 30 s -> 3 steps" in text
    assert "3p" in text  # 165 packets / 50 steps
    assert "0.6s" in text


def test_absent_test_class_is_said_and_not_scored_as_zero() -> None:
    y_true = np.array([0, 0, 1, 1], np.int64)
    y_pred = np.array([0, 0, 1, 1], np.int64)
    m = classification_metrics(y_true, y_pred, ["benign", "flood", "scan"], benign=0)
    assert m["absent"] == ["scan"]
    assert m["per_class"]["scan"]["absent"] is True
    assert m["macro_f1"] == 1.0
    assert m["macro_f1_classes"] == 2
    counts = {"test": {"benign": 2, "flood": 2, "scan": 0}}
    (message,) = absent_from_test(m, counts)
    assert "'scan' is absent from the test split" in message
    assert "never predicted: not scored" in message
    assert "over 2 of 3 classes" in message


def test_a_class_only_predicted_counts_in_macro_f1() -> None:
    y_true = np.array([0, 0, 1, 1], np.int64)
    y_pred = np.array([0, 2, 1, 1], np.int64)
    m = classification_metrics(y_true, y_pred, ["benign", "flood", "scan"], benign=0)
    assert m["absent"] == []
    assert m["macro_f1_classes"] == 3  # the false "scan" calls are not hidden


def test_recording_starts_are_padded_and_other_pieces_are_not() -> None:
    x = np.arange(1, 11, dtype=np.float32).reshape(10, 1)
    y = np.zeros(10, np.int64)
    groups = np.array([0] * 6 + [1] * 4, np.int64)
    starts = split.stream_starts(groups)
    assert starts == frozenset({0, 6})
    fill = np.array([-1.0], np.float32)
    ranges = [(0, 3), (3, 6), (6, 10)]
    w, _, last = split.windows(x, y, ranges, 3, starts, fill)
    # (0, 3) and (6, 10) start recordings: one window per step; (3, 6) starts mid-recording
    assert last.tolist() == [0, 1, 2, 5, 6, 7, 8, 9]
    assert w[0, :, 0].tolist() == [-1.0, -1.0, 1.0]
    assert w[3, :, 0].tolist() == [4.0, 5.0, 6.0]
    assert w[4, :, 0].tolist() == [-1.0, -1.0, 7.0]
