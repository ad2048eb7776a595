"""Small `iotids features` folders for the multi-worker tests: separable classes, generated."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from agent.features.batch import save_steps
from agent.features.steps import StepSpec
from agent.features.traffic import TRAFFIC_V1

CLASSES = ("benign", "synflood", "scan")


def write_recordings(folder: Path, per_class: int = 2, steps: int = 160, seed: int = 0) -> Path:
    """``per_class`` recordings of each class, ``steps`` 1-s traffic-v1 steps each."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    width = len(TRAFFIC_V1.columns)
    for c, label in enumerate(CLASSES):
        for k in range(per_class):
            values = rng.gamma(2.0, 1.0, (steps, width)).astype(np.float32)
            values[:, c :: len(CLASSES)] *= 4.0  # each class lifts its own third of the columns
            recording = SimpleNamespace(
                values=values,
                start_ns=np.arange(steps, dtype=np.int64) * 1_000_000_000,
                packets=np.full(steps, 10, np.int64),
            )
            with (folder / f"{label}-{k}.pcap.npz").open("wb") as fh:
                save_steps(fh, recording, StepSpec("time", 1.0), 16)
    return folder
