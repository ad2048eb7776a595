"""Site calibration: robust thresholds, the signed floor, persistence, CLI and live agent."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent import calibration as cal
from agent.app import App, replay_capture
from agent.bundle import load_bundle, load_public_key
from agent.cli import main as iotids
from agent.config import ConfigError, parse_config
from agent.features.traffic import TRAFFIC_V1
from agent.inference import Debounce, ModelSlot
from agent.report.memory import MemorySink
from agent.site import saved_calibration
from agent.sources import StepBatch
from tests.agent.flood_bundle import FloodKit, flood_kit
from tests.agent.openset_kit import PairKit, calibrating_config, compute_site, pair_kit
from tests.agent.run_app import run_to_end


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> FloodKit:
    return flood_kit(tmp_path_factory.mktemp("flood"))


@pytest.fixture(scope="module")
def pairs(kit: FloodKit, tmp_path_factory: pytest.TempPathFactory) -> PairKit:
    return pair_kit(kit, tmp_path_factory.mktemp("pairs"))


# --- the statistics ----------------------------------------------------------------------------


def test_the_tail_threshold_ignores_a_contaminated_top_percent() -> None:
    rng = np.random.default_rng(0)
    clean = rng.exponential(1.0, 20_000)
    dirty = clean.copy()
    dirty[:150] = 1e6  # 0.75 % of the period is an attack scoring off the scale
    exceed = 1e-5
    # the attack moves the threshold by a bounded amount (q99 shifts inside the sample) and
    # never reaches it: a quantile as high as the target rate would be the attack itself
    assert cal.tail_threshold(clean, exceed) < cal.tail_threshold(dirty, exceed)
    assert cal.tail_threshold(dirty, exceed) < 2 * cal.tail_threshold(clean, exceed)
    assert np.quantile(dirty, 1 - exceed) == 1e6
    # an exponential tail: the extrapolation lands near the true quantile, ln(1 / 1e-5)
    assert cal.tail_threshold(clean, exceed) == pytest.approx(np.log(1 / exceed), rel=0.15)
    assert cal.tail_threshold(clean, 0.1) == pytest.approx(np.quantile(clean, 0.9))


def test_calibration_never_goes_below_the_signed_floor() -> None:
    n = 5000
    probabilities = np.column_stack((np.full(n, 0.99), np.full(n, 0.01)))
    found = compute_site(probabilities, np.full(n, 0.01))
    assert found.thresholds == {"flood": 0.5}
    assert found.anomaly_threshold == 1.0


def test_a_noisy_site_raises_thresholds_and_rare_flags_are_left_out() -> None:
    rng = np.random.default_rng(1)
    n = 20_000
    flood = rng.beta(2, 30, n)  # the site's benign traffic looks a little like a flood
    anomaly = rng.lognormal(0.5, 0.6, n)
    flood[:100] = anomaly[:100] = 0.999  # 0.5 % confident and far: flagged
    anomaly[:100] = 500.0
    found = compute_site(np.column_stack((1 - flood, flood)), anomaly)
    assert found.excluded == 100
    assert found.flagged_fraction == pytest.approx(0.005)
    assert 0.5 < found.thresholds["flood"] < 0.999
    assert 1.0 < (found.anomaly_threshold or 0) < 500.0


def test_a_site_flagged_most_of_the_time_is_calibrated_on_and_says_so() -> None:
    n = 2000
    probabilities = np.column_stack((np.full(n, 0.2), np.linspace(0.6, 0.9, n)))
    found = compute_site(probabilities, np.full(n, 5.0))
    assert found.flagged_fraction == 1.0
    assert found.excluded == 0
    assert found.thresholds["flood"] > 0.9


def test_an_int8_label_that_is_almost_always_zero_keeps_its_signed_threshold() -> None:
    # int8 outputs move in 1/256 steps: "zero" 95 % of the time and one step otherwise is a
    # quiet label, not a wide tail to extrapolate to a threshold near 1 (that would blind it)
    rng = np.random.default_rng(2)
    n = 20_000
    flood = np.where(rng.random(n) < 0.95, 0.0, 1 / 256) + np.where(
        rng.random(n) < 0.001, 2 / 256, 0
    )
    found = compute_site(np.column_stack((1 - flood, flood)), np.full(n, 0.01))
    assert found.thresholds["flood"] == 0.5


def test_a_site_read_as_one_class_at_the_int8_top_silences_it() -> None:
    # another network's everyday traffic read as a flood at the int8 top probability on most
    # windows: a threshold at that top would still be crossed all day, so it goes past it
    rng = np.random.default_rng(3)
    n = 3000
    top = 255 / 256
    flood = np.where(rng.random(n) < 0.6, top, rng.uniform(0.0, 0.3, n))
    found = compute_site(np.column_stack((1 - flood, flood)), None, anomaly_floor=None)
    assert found.thresholds["flood"] == cal.SILENCED > top
    assert cal.silenced({**found.thresholds, "scan": 0.9, "odd": True}) == ["flood"]
    assert cal.effects(found.thresholds, 10) == [
        "silenced on this site: flood",
        "no label hits in a stream's first 10 windows",
    ]
    assert cal.effects({"scan": 0.9}, 0) == cal.effects({}, None) == []
    assert found.flagged_fraction > cal.MAX_EXCLUDED  # the site's normal: calibrated on
    # a pile on a lower step with a few windows above it: the next score above the pile
    flood = np.where(rng.random(n) < 0.6, 128 / 256, rng.uniform(0.0, 0.3, n))
    flood[:10] = 200 / 256
    found = compute_site(np.column_stack((1 - flood, flood)), None, anomaly_floor=None)
    assert found.thresholds["flood"] == 200 / 256


def test_too_few_windows_is_an_error() -> None:
    with pytest.raises(cal.CalibrationError, match="need at least"):
        compute_site(np.zeros((10, 2)), np.zeros(10))


def test_a_calibration_file_round_trips_atomically_and_bad_files_are_one_line(
    tmp_path: Path,
) -> None:
    found = compute_site(np.column_stack((np.full(500, 0.9), np.full(500, 0.1))), np.ones(500))
    path = tmp_path / "state" / "calibration-cnn.json"
    cal.save(found, path)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left behind
    assert cal.load(path) == found
    good = json.dumps(found.to_dict())
    for text in (
        "{",
        '{"schema": "x"}',
        json.dumps({**found.to_dict(), "windows": "9"}),
        good.replace('"seconds": 500.0', '"seconds": 1' + "0" * 400),  # no float holds it
        good.replace('"seconds": 500.0', '"seconds": ' + "9" * 5000),  # past the digit limit
        good.replace('"seconds": 500.0', '"seconds": NaN'),
    ):
        assert text != good
        path.write_text(text)
        with pytest.raises(cal.CalibrationError):
            cal.load(path)
        # the agent's saved state: unreadable is ignored (calibrate again), never a crash
        assert saved_calibration(path.parent, "cnn") is None


def test_a_saved_calibration_that_is_a_directory_is_ignored_in_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cal.state_path(tmp_path, "cnn").mkdir()
    with caplog.at_level(logging.WARNING):
        assert saved_calibration(tmp_path, "cnn") is None
    assert [r.getMessage() for r in caplog.records] == [
        f"{cal.state_path(tmp_path, 'cnn')}: ignored (not a regular file)"
    ]
    assert saved_calibration(tmp_path, "other") is None  # none at all: nothing to say
    assert len(caplog.records) == 1


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ({"duration": "soon"}, "calibration.duration: must be a number and a unit"),
        ({"duration": "10s"}, "calibration.duration: must be 1m..30d"),
        ({"target_false_alarms_per_day": 0}, "calibration.target_false_alarms_per_day"),
        ({"period": "1h"}, "calibration.period: unknown key"),
    ],
)
def test_calibration_config_errors_name_the_key(table: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        parse_config({"agent": {"device_id": "gw"}, "calibration": table})


def test_calibration_config_defaults() -> None:
    config = parse_config({"agent": {"device_id": "gw"}, "calibration": {}})
    assert config.calibration is not None
    assert config.calibration.seconds == 86400.0
    assert config.calibration.target_false_alarms_per_day == 1.0


# --- offline: iotids agent calibrate / replay --calibration --------------------------------------


def test_offline_calibration_keeps_the_attack_it_was_made_during(
    kit: FloodKit, pairs: PairKit, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cal.json"
    common = ("--bundle", str(pairs.paired), "--trust-key", str(kit.public_key))
    code = iotids(
        ["agent", "calibrate", *common, "--capture", str(pairs.long_capture), "--out", str(out)]
    )
    assert code == 0, capsys.readouterr().err
    found = cal.load(out)
    bundle = load_bundle(pairs.paired, [load_public_key(kit.public_key)])
    assert found.bundle_id == bundle.manifest.bundle_id
    assert 0 < found.excluded <= 0.05 * (found.windows + found.excluded)  # the flood, left out
    assert found.anomaly_threshold is not None
    assert found.anomaly_threshold >= 0.005
    capsys.readouterr()
    code = iotids(
        [
            *("agent", "replay", *common, "--capture", str(pairs.long_capture)),
            *("--calibration", str(out), "--json"),
        ]
    )
    assert code == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    news = [e for e in events if e["type"] == "new"]
    assert [e["label"] for e in news] == ["flood"]
    assert 0 < news[0]["window_end"] - pairs.long_flood_start <= 3.0


def test_replay_refuses_a_calibration_made_for_another_bundle(
    kit: FloodKit, pairs: PairKit, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = compute_site(np.column_stack((np.full(500, 0.9), np.full(500, 0.1))), np.ones(500))
    cal.save(other, tmp_path / "other.json")
    code = iotids(
        [
            *("agent", "replay", "--bundle", str(pairs.paired), "--capture", str(kit.capture)),
            *("--trust-key", str(kit.public_key), "--calibration", str(tmp_path / "other.json")),
        ]
    )
    assert code == 2
    assert "--calibration: made for bundle b" in capsys.readouterr().err


def test_calibration_is_refused_while_a_detection_is_active(kit: FloodKit, pairs: PairKit) -> None:
    bundle = load_bundle(pairs.paired, [load_public_key(kit.public_key)])
    slot = ModelSlot("m", "lan", TRAFFIC_V1, bundle.manifest.step, bundle, Debounce())
    opened: list[Any] = []
    replay_capture(bundle, kit.capture, on_scores=lambda *row: opened.append(row))
    # feed the slot up to the middle of the flood through the real source path
    from agent.features.capture import read_capture
    from agent.features.traffic import featurize

    steps = featurize(read_capture(kit.capture).packets, bundle.manifest.step)
    middle = int(np.searchsorted(steps.start_ns, int((kit.flood_start + 4) * 1e9)))
    events = slot.push(StepBatch(steps.start_ns[:middle], steps.values[:middle]))
    assert [e.kind for e in events] == ["new"]
    found = cal.SiteCalibration(bundle.manifest.bundle_id, {}, 1.0, 1.0, 100, 0, 0.0, 100.0)
    with pytest.raises(cal.CalibrationError, match="while a detection is active"):
        slot.calibrate(found)
    assert slot.calibration is None
    slot.push(StepBatch(steps.start_ns[middle:], steps.values[middle:]))
    # the flood is over but its detection is dormant (hold): open, so still refused
    assert slot.decider.active_labels
    assert not slot.decider.busy
    with pytest.raises(cal.CalibrationError, match="while a detection is active"):
        slot.calibrate(found)
    assert [e.kind for e in slot.close()] == ["end"]
    slot.calibrate(found)
    assert slot.calibration == found
    assert any(row[3].any() for row in opened)  # the hook marks windows inside a detection


# --- live: [calibration] in the agent ------------------------------------------------------------


def test_the_agent_calibrates_persists_reports_and_resets(
    kit: FloodKit, pairs: PairKit, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    calibration = {"duration": "4m", "target_false_alarms_per_day": 1}
    config_data = calibrating_config(kit, pairs, tmp_path / "state", calibration)
    sink = run_to_end(config_data)
    assert sink.models[0]["calibration"] == {"state": "collecting"}
    assert sink.models[0]["open_set"]["threshold"] == 0.005
    # the flood came during calibration: the classifier stayed armed and raised it
    assert [e["label"] for e in sink.events if e["type"] == "new"] == ["flood"]
    state = tmp_path / "state" / "calibration-cnn.json"
    saved = cal.load(state)
    assert sink.models[-1]["calibration"]["state"] == "calibrated"
    assert sink.models[-1]["calibration"]["windows"] == saved.windows
    assert saved.seconds >= 240.0
    # the next start resumes with it and does not collect again
    sink = MemorySink()
    app = App(parse_config(config_data), sinks=[sink])
    assert app.pipeline.slot_list()[0].calibration == saved
    config_path = tmp_path / "agent.toml"
    config_path.write_text(_toml(config_data))
    assert iotids(["agent", "calibrate", "--reset", "--config", str(config_path)]) == 0
    assert not state.exists()
    assert "removed 1 calibration file" in capsys.readouterr().err


def _toml(data: dict[str, Any]) -> str:
    """Just enough TOML for this test's config."""
    agent, source, model = data["agent"], data["sources"][0], data["models"][0]
    return (
        f'[agent]\ndevice_id = "{agent["device_id"]}"\nstate_dir = "{agent["state_dir"]}"\n'
        f'trusted_keys = ["{agent["trusted_keys"][0]}"]\n[mqtt]\nenabled = false\n'
        f'[[sources]]\nname = "lan"\nkind = "pcap"\npath = "{source["path"]}"\n'
        f'[[models]]\nname = "cnn"\nbundle = "{model["bundle"]}"\nsource = "lan"\n'
    )
