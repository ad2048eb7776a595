"""A folder written by ``iotids synth``: traffic steps or telemetry steps with ground truth.

``part="traffic"``: ``traffic.pcap`` through the agent's reader and traffic-v1 featurizer, each
step labelled from ``packets.csv`` (a label per packet, in file order): the attack with most
packets when any attack packet is in the step, else benign. ``part="telemetry"``:
``telemetry.csv`` through the agent's telemetry-v1 featurizer, each step labelled the same way
from the rows' ``type``. Both use the gateway's own feature code (no train/serve skew).
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import numpy.typing as npt

from agent.features.steps import StepSpec
from training.datasets.base import BENIGN_NAMES, Dataset, parse_number

logger = logging.getLogger(__name__)

PARTS = ("traffic", "telemetry")
META = ("timestamp", "label", "type")


def _seconds_to_ns(text: str) -> int:
    """``1700000000.123456`` -> integer nanoseconds, without float rounding."""
    whole, _, frac = text.strip().partition(".")
    return int(whole) * 1_000_000_000 + int((frac + "000000000")[:9])


def majority_labels(
    step_of_item: npt.NDArray[np.int64], item_labels: list[str], n_steps: int
) -> npt.NDArray[np.str_]:
    """Per step: the attack with most items if any attack item is in it, else the benign name."""
    benign = next((name for name in item_labels if name.lower() in BENIGN_NAMES), "benign")
    per_step: list[Counter[str]] = [Counter() for _ in range(n_steps)]
    for step, label in zip(step_of_item.tolist(), item_labels, strict=True):
        if 0 <= step < n_steps and label.lower() not in BENIGN_NAMES:
            per_step[step][label] += 1
    return np.array([c.most_common(1)[0][0] if c else benign for c in per_step], np.str_)


def _traffic(root: Path, spec: StepSpec, max_rows: int | None) -> Dataset:
    """traffic-v1 steps of traffic.pcap with labels from packets.csv."""
    from agent.features.capture import read_capture
    from agent.features.mixed import packet_rows
    from agent.features.traffic import MAX_IDLE_STEPS, TRAFFIC_V1, featurize
    from training.datasets.captures import recording_info

    capture = read_capture(root / "traffic.pcap")
    steps = featurize(capture.packets, spec)
    with (root / "packets.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    labels = [r["label"] for r in rows]
    if spec.kind == "time":
        index = np.array([_seconds_to_ns(r["ts"]) // spec.size_ns for r in rows], np.int64)
        step_of = index - (steps.start_ns[0] // spec.size_ns if len(steps) else 0)
    else:
        if len(rows) != len(capture.packets):
            raise ValueError(
                f"{root}: {len(rows)} labelled packets but {len(capture.packets)} decoded; "
                "packet-count steps need them to match"
            )
        step_of = packet_rows(capture.packets.ts_ns, spec, MAX_IDLE_STEPS)
    y = majority_labels(step_of, labels, len(steps))
    end = max_rows or len(steps)
    return Dataset(
        kind="synthetic",
        name=TRAFFIC_V1.name,
        version=TRAFFIC_V1.version,
        columns=list(TRAFFIC_V1.columns),
        x=steps.values[:end].astype(np.float32),
        label_names=y[:end],
        sequential=True,
        group_names=[root.name],
        dropped={"malformed_frames": capture.malformed_total} if capture.malformed_total else {},
        step=spec.to_dict(),
        options={"step": spec_text(spec), "part": "traffic"},
        recordings={root.name: recording_info(capture.packets.ts_ns, min(end, len(steps)))},
    )


def spec_text(spec: StepSpec) -> str:
    """The ``--step`` text that parses back to ``spec``."""
    return spec.text


def _telemetry(root: Path, spec: StepSpec, max_rows: int | None) -> Dataset:
    """telemetry-v1 steps of telemetry.csv, labelled from the rows' ``type``."""
    from agent.features.telemetry import TelemetryFeaturizer

    with (root / "telemetry.csv").open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        sensors = [c for c in (reader.fieldnames or []) if c not in META]
    ts = np.array([_seconds_to_ns(r["timestamp"]) for r in rows], np.int64)
    featurizer = TelemetryFeaturizer(sensors, spec)
    for sensor in sensors:
        featurizer.push(ts, sensor, [parse_number(r[sensor]) for r in rows])
    steps = featurizer.flush()
    types = [r["type"].strip() for r in rows]
    step_of = (ts - steps.start_ns[0]) // spec.size_ns if len(steps) else ts
    y = majority_labels(step_of, types, len(steps))
    end = max_rows or len(steps)
    return Dataset(
        kind="synthetic",
        name=featurizer.feature_set.name,
        version=featurizer.feature_set.version,
        columns=list(featurizer.feature_set.columns),
        x=steps.values[:end],
        label_names=y[:end],
        sequential=True,
        group_names=[root.name],
        dropped={"nonfinite_readings": featurizer.skipped_nonfinite},
        step=spec.to_dict(),
        options={"step": spec_text(spec), "part": "telemetry"},
    )


def load(
    path: str,
    step: str = "1s",
    part: str | None = None,
    max_rows: int | None = None,
) -> Dataset:
    """The traffic or telemetry half of a synth folder (default: traffic when there is a pcap)."""
    if part is None:
        part = "traffic" if (Path(path) / "traffic.pcap").is_file() else "telemetry"
    if part not in PARTS:
        raise ValueError(f"part: must be one of {PARTS}, got {part!r}")
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(
            f"--path {root}: no such folder; make one with: iotids synth traffic -o {root}"
        )
    spec = StepSpec.parse(step)
    dataset = (
        _traffic(root, spec, max_rows) if part == "traffic" else _telemetry(root, spec, max_rows)
    )
    return dataset.drop_nonfinite()
