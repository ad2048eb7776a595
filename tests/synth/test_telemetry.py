"""Telemetry generation: the TON_IoT table shape, labelled faults, coupling, determinism."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from agent.cli import main
from training.synth.telemetry import (
    FAULTS,
    FaultSpec,
    TelemetryError,
    TelemetryScenario,
    generate_telemetry,
    synthesize_telemetry,
)

HOUR = 3600.0


def test_industrial_csv_shape_and_labels(tmp_path: Path) -> None:
    result = generate_telemetry(TelemetryScenario(duration=HOUR, seed=1), tmp_path)
    with result.path.open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [
        "timestamp",
        "temperature",
        "pressure",
        "rotation_speed",
        "label",
        "type",
    ]
    assert len(rows) == 3600
    for row in rows:
        assert (row["label"] == "0") == (row["type"] == "normal")
    assert {r["type"] for r in rows} == {"normal", *FAULTS["industrial"]}
    assert 0.05 < np.mean([r["label"] == "1" for r in rows]) < 0.35
    stamps = [float(r["timestamp"]) for r in rows]
    assert np.allclose(np.diff(stamps), 1.0)
    assert stamps[0] > 1.6e9
    saved = json.loads((tmp_path / "scenario.json").read_text())
    assert saved["kind"] == "industrial"
    assert len(saved["faults"]) == 12


def test_dos_rows_are_kept_with_nan_readings(tmp_path: Path) -> None:
    result = generate_telemetry(TelemetryScenario(duration=HOUR, seed=2), tmp_path)
    dos = np.array([t == "dos" for t in result.type])
    assert dos.sum() > 0
    assert np.isnan(result.values[dos]).all()
    assert not np.isnan(result.values[~dos]).any()
    text = result.path.read_text().splitlines()
    assert any(",nan,nan,nan,1,dos" in line for line in text)


def test_speed_drives_temperature_and_load_drives_pressure() -> None:
    _, values, label, _ = synthesize_telemetry(TelemetryScenario(duration=HOUR, seed=3))
    normal = label == 0
    temperature, pressure, speed = values[normal].T
    assert np.corrcoef(speed, temperature)[0, 1] > 0.5
    assert np.corrcoef(speed, pressure)[0, 1] > 0.5
    assert temperature.min() > 10
    assert temperature.max() < 100
    assert speed.min() > 300
    assert speed.max() < 3200


def test_daily_cycle_is_visible_over_a_day() -> None:
    ts, values, label, _ = synthesize_telemetry(
        TelemetryScenario(duration=86_400.0, step=10.0, seed=4)
    )
    hours = (ts % 86_400) / 3600
    normal = label == 0
    speed = values[:, 2]
    night = normal & ((hours < 5) | (hours >= 23))
    day = normal & (hours >= 9) & (hours < 20)
    assert speed[day].mean() > speed[night].mean() + 300


@pytest.mark.parametrize(
    ("fault", "column", "check"),
    [
        ("stuck_at", 2, lambda seg, before: np.ptp(seg) == 0),
        ("jump", 0, lambda seg, before: abs(seg.mean() - before.mean()) > 4),
        ("drift", 1, lambda seg, before: seg[-10:].mean() - seg[:10].mean() > 0.1),
    ],
)
def test_faults_change_the_readings(fault: str, column: int, check: object) -> None:
    scenario = TelemetryScenario(duration=1200.0, seed=5, faults=(FaultSpec(fault, 600, 900),))
    _, values, label, types = synthesize_telemetry(scenario)
    assert label[600:900].all()
    assert not label[:600].any()
    assert not label[900:].any()
    assert set(types[600:900]) == {fault}
    assert callable(check)
    assert check(values[600:900, column], values[540:600, column])


def test_replay_copies_an_earlier_segment() -> None:
    scenario = TelemetryScenario(duration=1200.0, seed=6, faults=(FaultSpec("replay", 800, 900),))
    _, values, _, _ = synthesize_telemetry(scenario)
    segment = values[800:900]
    matches = [s for s in range(0, 700) if np.array_equal(values[s : s + 100], segment)]
    assert matches


def test_smarthome_states_routine_and_impossible_sequences(tmp_path: Path) -> None:
    result = generate_telemetry(
        TelemetryScenario(kind="smarthome", duration=6 * HOUR, seed=7), tmp_path
    )
    names = result.sensors
    assert names == ("door_lock", "door", "motion", "light", "camera")
    readings = result.values[~np.isnan(result.values).any(axis=1)]
    assert set(np.unique(readings).tolist()) <= {0.0, 1.0}
    normal = result.label == 0
    lock, door = result.values[:, 0], result.values[:, 1]
    assert not ((lock == 1) & (door == 1) & normal).any()  # a door never opens while locked
    impossible = np.array([t == "impossible_state" for t in result.type])
    assert ((lock == 1) & (door == 1) & impossible).any()
    assert door[normal].sum() > 0  # the routine happens
    assert result.values[normal, 2].sum() > 0
    assert {t for t in result.type} == {"normal", *FAULTS["smarthome"]}


def test_same_seed_same_file(tmp_path: Path) -> None:
    a = generate_telemetry(
        TelemetryScenario(kind="smarthome", duration=HOUR, seed=8), tmp_path / "a"
    )
    b = generate_telemetry(
        TelemetryScenario(kind="smarthome", duration=HOUR, seed=8), tmp_path / "b"
    )
    c = generate_telemetry(
        TelemetryScenario(kind="smarthome", duration=HOUR, seed=9), tmp_path / "c"
    )
    assert a.path.read_bytes() == b.path.read_bytes() != c.path.read_bytes()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "factory"}, "kind: must be one of industrial, smarthome"),
        ({"step": 0.0}, "step: must be > 0"),
        ({"duration": 10.0}, "duration: must cover at least 100 steps"),
        ({"faults": (FaultSpec("impossible_state", 1, 2),)}, "faults[0].kind: must be one of"),
        ({"faults": (FaultSpec("jump", 50, 20),)}, "faults[0].stop"),
    ],
)
def test_bad_telemetry_values_are_named(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(TelemetryError) as excinfo:
        TelemetryScenario(**kwargs)  # type: ignore[arg-type]
    assert str(excinfo.value).startswith(message)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "synth",
                "telemetry",
                "--out",
                str(tmp_path),
                "--kind",
                "smarthome",
                "--seed",
                "3",
                "--duration",
                "600",
                "--step",
                "2",
            ]
        )
        == 0
    )
    lines = (tmp_path / "telemetry.csv").read_text().splitlines()
    assert len(lines) == 1 + 300
    assert math.isclose(float(lines[2].split(",")[0]) - float(lines[1].split(",")[0]), 2.0)
    assert main(["synth", "telemetry", "--out", str(tmp_path / "x"), "--duration", "5"]) == 2
    assert "duration: must cover" in capsys.readouterr().err


def test_the_agent_featurizer_sees_the_dos_gap_go_stale() -> None:
    """telemetry-v1 steps from our rows: staleness grows through a DoS gap and resets after."""
    from agent.features.telemetry import featurize_telemetry, telemetry_feature_set

    scenario = TelemetryScenario(duration=600.0, seed=10, faults=(FaultSpec("dos", 300, 360),))
    ts, values, _, _ = synthesize_telemetry(scenario)
    ts_ns = np.round(ts * 1e9).astype(np.int64)
    sensors = scenario.sensors
    steps = featurize_telemetry(sensors, [(ts_ns, s, values[:, i]) for i, s in enumerate(sensors)])
    assert len(steps) == 600
    staleness = steps.values[:, telemetry_feature_set(sensors).index("temperature.staleness_s")]
    assert staleness[:299].max() <= 1.0
    assert staleness[355] > 50
    assert staleness[365:].max() <= 1.0
