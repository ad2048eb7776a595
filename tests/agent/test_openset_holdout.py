"""Hold one attack family out of training: it must still raise an alarm through the agent.

A real (small) pipeline: generated ``demo-train`` traffic without the scan family, a CNN
trained and converted to an int8 bundle, a benign model trained on the benign windows and
paired into the same signed bundle (``iotids openset``'s code), then generated traffic with
only the scans (another seed) replayed through ``agent.replay.replay_capture`` on the real TFLite
interpreter. The classifier alone is replayed too, to show what the benign model adds, and the
pair again after a site calibration on another network's benign traffic, which must not blind it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.bundle import load_bundle, load_public_key
from benchmarks.openset import (
    FAMILIES,
    SEEDS,
    Plan,
    calibrate_on,
    family_of,
    holdout_detections,
    holdout_scenario,
    site_scenario,
    train_pair,
)

HELD_OUT = "scan"
PLAN = Plan(epochs=15)


@pytest.mark.tf
@pytest.mark.slow
def test_a_family_absent_from_training_still_raises_an_alarm(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    from training.synth.traffic import generate_traffic

    kinds = FAMILIES[HELD_OUT]
    pair = train_pair(tmp_path / "pair", PLAN, kinds)
    key = [load_public_key(pair.public_key)]
    paired = load_bundle(pair.paired, key)
    classifier = load_bundle(pair.classifier, key)
    assert not set(kinds) & set(classifier.manifest.labels)  # truly never trained on
    scenario = holdout_scenario(kinds, SEEDS["holdout"] + 7)  # not the benchmark's seed
    run = generate_traffic(scenario, tmp_path / "holdout")
    found = holdout_detections(paired, run.pcap, scenario)
    for kind, label in found.items():
        assert label is not None, f"{kind} (held out) raised no alarm: {found}"
        assert label == "unknown" or family_of(label) == HELD_OUT, f"{kind} raised as {label}"
    alone = holdout_detections(classifier, run.pcap, scenario)
    assert "unknown" not in alone.values()  # the classifier alone has no such answer
    # calibrated on another site's benign traffic, the scans are still caught
    site = generate_traffic(site_scenario(SEEDS["site_cal"] + 10, 900.0), tmp_path / "site")
    calibration = calibrate_on(paired, site.pcap)
    assert calibration.anomaly_threshold is not None
    assert calibration.anomaly_threshold >= paired.manifest.extra["openset"]["threshold"]
    calibrated = holdout_detections(paired, run.pcap, scenario, calibration)
    assert all(label == "unknown" for label in calibrated.values()), calibrated
