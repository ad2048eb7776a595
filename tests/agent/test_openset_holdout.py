"""Hold one attack family out of training: it must still raise an alarm through the agent.

A real (small) pipeline: generated ``demo-train`` traffic without the scan family, a CNN
trained and converted to an int8 bundle, a benign model trained on the benign windows and
paired into the same signed bundle (``iotids openset``'s code), then generated traffic with
only the scans (another seed) replayed through ``agent.replay.replay_capture`` on the real TFLite
interpreter. The classifier alone is replayed too, to show what the benign model adds, and the
pair again after a site calibration on another network's benign traffic, which must not blind it.
Uncalibrated, the pair must not alarm at a benign stream's start (every sensor connecting at
once): such an alarm stays open and takes the next attack in (its signed stream-start edge).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.bundle import Bundle, load_bundle, load_public_key
from agent.calibration import START_WINDOWS
from agent.replay import replay_capture
from benchmarks.openset import (
    FAMILIES,
    SEEDS,
    Plan,
    calibrate_on,
    family_of,
    holdout_detections,
    holdout_outcomes,
    holdout_scenario,
    site_scenario,
    train_pair,
)

HELD_OUT = "scan"
PLAN = Plan(epochs=15)
BENIGN_SEEDS = (SEEDS["holdout"] + 8, SEEDS["holdout"] + 9, SEEDS["holdout"] + 10)


def _start_alarms(bundle: Bundle, folder: Path) -> dict[int, list[float]]:
    """Per benign stream (150 s, the training network's mix): alarms in its first windows."""
    from training.synth.scenario import TrafficScenario
    from training.synth.traffic import generate_traffic

    step_s = bundle.manifest.step.size_ns / 1e9
    start_s = (bundle.manifest.window + START_WINDOWS - 1) * step_s  # the last start window ends
    found = {}
    for seed in BENIGN_SEEDS:
        scenario = TrafficScenario(seed=seed, duration=150.0)
        run = generate_traffic(scenario, folder / f"benign-{seed}")
        times = [
            e.time_ns / 1e9 - scenario.start_time
            for e in replay_capture(bundle, run.pcap).events
            if e.kind == "new"
        ]
        found[seed] = [t for t in times if t <= start_s]
    return found


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
    own, notes = holdout_outcomes(paired, run.pcap, scenario)
    assert None not in own.values(), f"an attack raised no alarm of its own: {own} {notes}"
    assert _start_alarms(paired, tmp_path) == {seed: [] for seed in BENIGN_SEEDS}
    alone = holdout_detections(classifier, run.pcap, scenario)
    # the classifier alone answers unknown from its own scores (agent.classifier_unknown) when
    # it is sure a window is not benign; the pair finds every attack it finds, and more
    assert {k for k, v in alone.items() if v is not None} <= {k for k, v in found.items() if v}
    # calibrated on another site's benign traffic, the scans are still caught
    site = generate_traffic(site_scenario(SEEDS["site_cal"] + 10, 900.0), tmp_path / "site")
    calibration = calibrate_on(paired, site.pcap)
    assert calibration.anomaly_threshold is not None
    assert calibration.anomaly_threshold >= paired.manifest.extra["openset"]["threshold"]
    calibrated = holdout_detections(paired, run.pcap, scenario, calibration)
    assert all(label == "unknown" for label in calibrated.values()), calibrated
