"""The accumulator: a stuck sensor and a small lasting score rise raise; hostile specs are refused.

The agent path runs the real agent (CSV source, real TFLite interpreter) on a bundle whose
signed manifest carries ``extra.accumulator``, and on the same bundle without it.
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.accumulate import (
    Accumulator,
    AccumulatorError,
    AccumulatorSpec,
    CrossSpec,
    FlatSpec,
    cusum,
)
from agent.app import App
from agent.bundle import BundleError, Manifest
from agent.config import parse_config
from agent.features.telemetry import telemetry_feature_set
from agent.report.memory import MemorySink
from tests.agent.bundles import bundle_bytes, manifest_for, with_fields
from tests.agent.flood_bundle import FloodKit, flood_kit

SPEC = AccumulatorSpec(level=0.125, limit=1.0, cap=2.0, stuck_columns=(0,), stuck_runs=(3,))


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> FloodKit:
    return flood_kit(tmp_path_factory.mktemp("accumulate"))


def test_a_value_held_longer_than_its_normal_run_is_stuck_across_batches() -> None:
    noisy = np.random.default_rng(0).normal(20, 1, 10)
    steps = np.concatenate([noisy, np.full(6, 7.0)])[:, None]
    whole = Accumulator(SPEC).stuck(steps)
    acc = Accumulator(SPEC)
    parts = np.concatenate([acc.stuck(steps[:12]), acc.stuck(steps[12:13]), acc.stuck(steps[13:])])
    np.testing.assert_allclose(whole, parts)
    assert not (whole[:10] >= 1).any()
    # runs 1, 2, 3, 4 of the held 7.0 over 3 + 1 allowed: the 4th equal value is stuck
    assert np.flatnonzero(whole >= 1).tolist() == [13, 14, 15]
    nan = Accumulator(SPEC).stuck(np.full((8, 1), np.nan))
    assert not (nan >= 1).any()  # NaN equals nothing: a missing reading is not a frozen one


def test_cusum_adds_what_stays_over_the_level_and_drains_after() -> None:
    acc = Accumulator(SPEC)
    quiet = acc.scores(np.full(50, 0.05))
    assert (quiet == 0).all()  # under the level: nothing accumulates
    rise = acc.scores(np.full(30, 0.375))  # each window only 0.25 over the level
    assert np.flatnonzero(rise >= 1)[0] == 3  # the 4th window brings the sum to 1.0
    assert rise.max() == pytest.approx(2.0)  # clipped at cap · limit
    after = acc.scores(np.zeros(30))
    # capped at 2.0, it drains 0.125 a window: back to 0 in 16 windows, not in hundreds
    assert after[15] == 0
    assert (after[:8] >= 1).all()
    assert after[8] < 1
    acc.scores(np.full(3, 0.9))
    acc.reset()
    assert acc.total == 0
    assert acc.scores(np.array([0.125]))[0] == 0


def test_cusum_ignores_nan_and_clips_inf() -> None:
    sums = cusum(np.array([0.5, np.nan, math.inf, 0.0]), 0.1, 1.0, 2.0)
    np.testing.assert_allclose(sums, [0.4, 0.4, 2.0, 1.9])


def test_a_loud_window_alone_crosses_the_per_window_threshold() -> None:
    acc = Accumulator(AccumulatorSpec(level=0.1, limit=5.0, threshold=0.8))
    assert acc.scores(np.array([0.2, 0.9, 0.2])).tolist()[1] >= 1


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ({"level": float("nan"), "limit": 1.0}, "level"),
        ({"level": -1.0, "limit": 1.0}, "level"),
        ({"level": 0.1, "limit": 1e300}, "limit"),
        ({"level": 0.1, "limit": 0.0}, "limit"),
        ({"level": 0.1, "limit": 1.0, "cap": 0.5}, "cap"),
        ({"level": 0.1, "limit": 1.0, "threshold": -2}, "threshold"),
        ({"level": 0.1, "limit": True}, "limit"),
        ({"level": "0.1", "limit": 1.0}, "level"),
        ({"limit": 1.0}, "level"),
        ({"level": 0.1, "limit": 1.0, "stuck_columns": [0], "stuck_runs": [-3]}, "stuck_runs"),
        ({"level": 0.1, "limit": 1.0, "stuck_columns": [0], "stuck_runs": [2**62]}, "stuck_runs"),
        ({"level": 0.1, "limit": 1.0, "stuck_columns": [0, 0], "stuck_runs": [3, 3]}, "stuck_"),
        ({"level": 0.1, "limit": 1.0, "stuck_columns": [0]}, "stuck_runs"),
        ({"level": 0.1, "limit": 1.0, "stuck_columns": "0"}, "stuck_columns"),
        ({"level": 0.1, "limit": 1.0, "stuck_columns": [7], "stuck_runs": [3]}, "stuck_columns"),
        ({"level": 0.1, "limit": 1.0, "surprise": 1}, "surprise"),
        ([1, 2], "accumulator"),
    ],
)
def test_hostile_accumulator_sections_are_refused_at_bundle_load(
    kit: FloodKit, section: Any, field: str
) -> None:
    manifest = _anomaly_manifest(kit, section)
    raw = json.loads(manifest.to_json())
    raw["extra"]["accumulator"] = section  # as a hostile signer would write it (NaN included)
    with pytest.raises(BundleError, match=rf"extra\.accumulator.*{field}|{field}.*"):
        Manifest.from_json(json.dumps(raw).encode())


def test_the_spec_round_trips_through_the_manifest(kit: FloodKit) -> None:
    spec = AccumulatorSpec(0.2, 3.0, 2.0, 0.7, (0,), (4,))
    manifest = Manifest.from_json(_anomaly_manifest(kit, spec.to_dict()).to_json())
    assert AccumulatorSpec.from_manifest(manifest.extra["accumulator"]) == spec
    with pytest.raises(AccumulatorError):
        AccumulatorSpec(0.2, 3.0, stuck_columns=(0,), stuck_runs=())


def test_agent_run_raises_a_stuck_sensor_only_with_the_accumulator(
    kit: FloodKit, tmp_path: Path
) -> None:
    rng = np.random.default_rng(3)
    temps = [*rng.normal(20, 0.5, 40).round(3), *[20.5] * 30, *rng.normal(20, 0.5, 20).round(3)]
    plant = tmp_path / "plant.csv"
    plant.write_text(
        "timestamp,temp\n" + "".join(f"{1_700_000_000 + i},{t}\n" for i, t in enumerate(temps))
    )
    section = AccumulatorSpec(1.0, 10.0, stuck_columns=(0,), stuck_runs=(5,)).to_dict()
    with_acc = _run(kit, tmp_path / "with", plant, section)
    without = _run(kit, tmp_path / "without", plant, None)
    assert without == []  # 20 °C scores far under the per-window threshold throughout
    new = [e for e in with_acc if e["type"] == "new"]
    assert len(new) == 1
    # the held value starts at step 40; its 7th equal reading (run 7 > 5 + 1) is step 46,
    # and the debounce (2 of 3) raises one window later
    assert new[0]["window_end"] == pytest.approx(1_700_000_047 + 1, abs=1)
    assert new[0]["threshold"] == 1.0
    assert new[0]["score_ratio"] >= 1.0
    ends = [e for e in with_acc if e["type"] == "end"]
    assert ends
    assert ends[0]["end"] < 1_700_000_000 + 90


def _anomaly_manifest(kit: FloodKit, section: Any) -> Manifest:
    model = (kit.folder / "telemetry_anomaly.tflite").read_bytes()
    manifest = manifest_for(
        model,
        telemetry_feature_set(["temp"]),
        bundle_id="boiler-accumulated",
        signer=kit.signer,  # type: ignore[arg-type]
        task="anomaly",
        labels=("anomaly",),
        categories={"anomaly": "process"},
        thresholds={"anomaly": 0.3},
        maxima=np.array([100.0, 100.0, 60.0]),
    )
    return with_fields(manifest, extra={} if section is None else {"accumulator": section})


def _run(kit: FloodKit, state: Path, plant: Path, section: Any) -> list[dict[str, Any]]:
    state.mkdir()
    model = (kit.folder / "telemetry_anomaly.tflite").read_bytes()
    bundle = state / "boiler.bundle"
    bundle.write_bytes(bundle_bytes(_anomaly_manifest(kit, section), model, kit.signer))  # type: ignore[arg-type]
    config = parse_config(
        {
            "agent": {
                "device_id": "gw-test",
                "state_dir": str(state),
                "trusted_keys": [str(kit.public_key)],
            },
            "mqtt": {"enabled": False},
            "sources": [{"name": "plant", "kind": "csv", "path": str(plant), "sensors": ["temp"]}],
            "models": [{"name": "boiler", "bundle": str(bundle), "source": "plant"}],
        }
    )
    sink = MemorySink()
    app = App(config, sinks=[sink])
    thread = threading.Thread(target=app.run, name="agent-under-test")
    thread.start()
    thread.join(60)
    assert not thread.is_alive()
    return list(sink.events)


def test_agent_run_raises_a_drift_through_the_cross_check(kit: FloodKit, tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    noise = rng.normal(0, 0.2, 100)
    temps = 20 + noise + np.concatenate([np.zeros(50), np.linspace(0, 2.0, 50)])
    plant = tmp_path / "plant.csv"
    plant.write_text(
        "timestamp,temp\n"
        + "".join(f"{1_700_000_000 + i},{t:.3f}\n" for i, t in enumerate(temps.tolist()))
    )
    # the one-sensor kit has no second sensor: the value is estimated from the constant
    # staleness column (so: a level of 20 °C), the staleness from the value (weight 0)
    cross = CrossSpec((0, 2), (1, 3), ((0.0, 0.0, 20.0), (0.0, 0.0, 1.0)), (0.2, 1.0), 2.5, 20.0)
    section = AccumulatorSpec(1.0, 10.0, cross=cross).to_dict()
    assert _run(kit, tmp_path / "quiet", plant, None) == []
    events = _run(kit, tmp_path / "with", plant, section)
    new = [e for e in events if e["type"] == "new"]
    assert len(new) == 1
    # z passes the 2.5 slack after about 0.5 / 2.0 · 50 = 13 ramp steps, the sum 20 a few
    # steps later: never before the ramp, well before its end
    assert 1_700_000_050 + 13 < new[0]["window_end"] < 1_700_000_000 + 100
    assert new[0]["score_ratio"] >= 1.0


def test_agent_run_raises_a_flat_line_only_with_the_variability_check(
    kit: FloodKit, tmp_path: Path
) -> None:
    rng = np.random.default_rng(5)
    temps = 20 + rng.normal(0, 0.2, 100)
    temps[60:85] = 20.3 + rng.normal(0, 0.005, 25)  # a plausible level, held with a little noise
    plant = tmp_path / "plant.csv"
    plant.write_text(
        "timestamp,temp\n"
        + "".join(f"{1_700_000_000 + i},{t:.3f}\n" for i, t in enumerate(temps.tolist()))
    )
    # noise 0.2 changes by about 0.23 a step: a 10-step mean under 0.04 is far too calm
    flat = FlatSpec(columns=(0,), span=10, low=(0.04,), high=(10.0,))
    section = AccumulatorSpec(1.0, 10.0, flat=flat).to_dict()
    assert _run(kit, tmp_path / "quiet", plant, None) == []
    events = _run(kit, tmp_path / "with", plant, section)
    new = [e for e in events if e["type"] == "new"]
    assert len(new) == 1
    # the last change from the noisy run leaves the 10-step span at step 70; the debounce
    # (2 of 3) raises a window or two later: never before the calm value, before its end
    assert 1_700_000_060 + 9 <= new[0]["window_end"] <= 1_700_000_060 + 14
    assert new[0]["score_ratio"] >= 1.0
    ends = [e for e in events if e["type"] == "end"]
    assert ends
    assert ends[0]["end"] < 1_700_000_000 + 100
