"""The synthetic loader labels steps the way the generator does, with the agent's featurizer."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from agent.cli import main
from training.datasets import load


def test_synthetic_traffic_steps_match_the_generator_labels(tmp_path: Path) -> None:
    assert main(["synth", "traffic", "--out", str(tmp_path), "--duration", "60"]) == 0
    ds = load("synthetic", str(tmp_path), step="1s")
    assert ds.feature_set.id == "traffic-v1"
    with (tmp_path / "steps.csv").open(newline="") as handle:
        expected = [row["label"] for row in csv.DictReader(handle)]
    assert ds.label_names.tolist() == expected
    assert ds.benign == "benign"
    packets = ds.x[:, ds.columns.index("packets")]
    with (tmp_path / "packets.csv").open(newline="") as handle:
        assert int(packets.sum()) == sum(1 for _ in csv.DictReader(handle))


def test_synthetic_telemetry_goes_through_the_telemetry_featurizer(tmp_path: Path) -> None:
    assert (
        main(["synth", "telemetry", "--out", str(tmp_path), "--duration", "3600", "--step", "5"])
        == 0
    )
    ds = load("synthetic", str(tmp_path), step="10s")
    assert ds.feature_set.id == "telemetry-v1"
    assert all(c.endswith((".value", ".delta", ".staleness_s")) for c in ds.columns)
    assert len(ds.x) == 360
    assert np.isfinite(ds.x).all()
    assert ds.benign == "normal"
