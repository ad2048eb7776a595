"""A site whose boot the classifier reads as an attack: quiet at a stream's start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent import calibration as cal
from agent.app import replay_capture
from agent.bundle import load_bundle, load_public_key
from agent.calibrate_cli import calibrate_bundle
from agent.calibration_collect import Collector
from tests.agent.bundles import flood_frames, pcap_bytes
from tests.agent.flood_bundle import FloodKit, flood_kit
from tests.agent.openset_kit import pair_kit


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> FloodKit:
    return flood_kit(tmp_path_factory.mktemp("flood"))


def _compute(start: Any, anomaly: Any = None, start_anomaly: Any = None) -> cal.SiteCalibration:
    rng = np.random.default_rng(0)
    flood = rng.uniform(0.0, 0.2, 3000)  # a calm site
    return cal.compute(
        bundle_id="b",
        labels=("benign", "flood"),
        watched=(1,),
        signed=(0.5, 0.5),
        probabilities=np.column_stack((1 - flood, flood)),
        anomaly=anomaly,
        anomaly_floor=None if anomaly is None else 1.0,
        seconds=3000.0,
        target_per_day=1.0,
        start_probabilities=np.asarray(start, np.float64),
        start_anomaly=start_anomaly,
    )


def test_a_boot_read_as_an_attack_quiets_the_stream_start() -> None:
    fired = [[0.9, 0.1], [0.1, 0.9], [np.nan, np.nan]]  # the second start window: a flood
    assert _compute(fired).start_quiet_windows == cal.START_WINDOWS
    assert _compute([[0.9, 0.1]] * cal.START_WINDOWS).start_quiet_windows == 0
    # a pair: the class fired where the benign model let it through (its raw score at the
    # signed floor, 1.0 here), or it did not fire at all (the benign model called the window
    # normal); a start window it never saw (NaN) did not fire
    calm = np.full(3000, 0.5)
    assert _compute(fired, calm, [0.2, 1.5, np.nan]).start_quiet_windows == cal.START_WINDOWS
    assert _compute(fired, calm, [1.5, 0.2, np.nan]).start_quiet_windows == 0
    assert _compute(fired, calm, [0.2, np.nan, np.nan]).start_quiet_windows == 0
    assert _compute(fired, calm).start_quiet_windows == 0
    grouped = [[0.2, 1.0], [1.5, 9.0], [np.nan, np.nan]]  # raw score, then a group's ratio
    quiet = _compute(fired, np.column_stack((calm, calm)), grouped).start_quiet_windows
    assert quiet == cal.START_WINDOWS
    found = _compute(fired)
    assert cal.SiteCalibration.from_dict(found.to_dict()) == found
    with pytest.raises(cal.CalibrationError, match="start_quiet_windows: expected a whole"):
        cal.SiteCalibration.from_dict(found.to_dict() | {"start_quiet_windows": 11})
    older = {k: v for k, v in found.to_dict().items() if k != "start_quiet_windows"}
    assert cal.SiteCalibration.from_dict(older).start_quiet_windows == 0


@pytest.mark.parametrize("paired", [False, True], ids=["classifier", "pair"])
def test_the_agent_holds_its_labels_in_a_quiet_stream_start(
    kit: FloodKit, tmp_path: Path, paired: bool
) -> None:
    path = pair_kit(kit, tmp_path / "pairs").paired if paired else kit.bundle
    bundle = load_bundle(path, [load_public_key(kit.public_key)])
    # a site that boots with a burst the model reads as a flood, then stays calm
    boot, _ = flood_frames(calm_s=0, flood_s=3, calm_after_s=300)
    (tmp_path / "site.pcap").write_bytes(pcap_bytes(boot))
    found = calibrate_bundle(bundle, str(tmp_path / "site.pcap"), 1.0)
    assert found.start_quiet_windows == cal.START_WINDOWS
    # an attack from the stream's first packet: raised once the quiet windows are past
    attack, _ = flood_frames(calm_s=0, flood_s=20, calm_after_s=5)
    (tmp_path / "attack.pcap").write_bytes(pcap_bytes(attack))
    signed = replay_capture(bundle, tmp_path / "attack.pcap")
    quiet = replay_capture(bundle, tmp_path / "attack.pcap", calibration=found)
    first = [next(e for e in r.events if e.kind == "new") for r in (signed, quiet)]
    assert [e.label for e in first] == ["flood", "flood"]
    step = bundle.manifest.step.size_ns
    window = bundle.manifest.window
    # signed: raised within the first windows; quiet: not before window START_WINDOWS
    assert first[0].time_ns - int(attack[0][0] * 1e9) <= (window + 2) * step
    assert first[1].time_ns - first[0].time_ns >= (cal.START_WINDOWS - 2) * step
    assert first[1].time_ns <= first[0].time_ns + (cal.START_WINDOWS + window) * step


def test_the_collector_keeps_the_stream_starts_probabilities() -> None:
    collector = Collector(labels=2, capacity=50)
    ends = np.arange(12, dtype=np.int64) * 1_000_000_000
    probabilities = np.column_stack((np.linspace(0, 1, 12), np.linspace(1, 0, 12)))
    collector.add(ends, probabilities, None, np.zeros(12, bool), np.arange(12, dtype=np.int64))
    assert np.array_equal(collector.start_probabilities, probabilities[: cal.START_WINDOWS])
    # windows that came later in the stream do not touch them
    collector.add(ends + 12, probabilities[::-1], None, np.zeros(12, bool), np.arange(12) + 12)
    assert np.array_equal(collector.start_probabilities, probabilities[: cal.START_WINDOWS])
