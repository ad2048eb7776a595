"""A calibration the operator vouches attack-free: every window learned, thresholds the margin
past the highest steady scores; the stream start keeps its own rules; the flag travels end to
end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agent import calibration as cal
from agent.calibration_collect import Collector
from agent.cli import main as iotids
from agent.config import ConfigError, parse_config
from agent.stream_start import START_MARGIN
from tests.agent.flood_bundle import FloodKit, flood_kit
from tests.agent.openset_kit import PairKit, calibrating_config, compute_site, pair_kit
from tests.agent.run_app import run_to_end


def _odds_past(p: float) -> float:
    """The probability at ``START_MARGIN`` times the odds of ``p``."""
    odds = START_MARGIN * p / (1.0 - p)
    return odds / (1.0 + odds)


def _site_with_a_rare_event(n: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    """Everyday flood scores well below the signed 0.5, and 0.5 % of windows (an SSH session,
    say) read as a flood at 0.9 and far from benign."""
    rng = np.random.default_rng(7)
    flood = rng.beta(2, 30, n)
    anomaly = rng.lognormal(0.0, 0.3, n)
    flood[5000:5100] = 0.9
    anomaly[5000:5100] = 40.0
    return np.column_stack((1 - flood, flood)), anomaly


def test_the_rare_event_is_guarded_against_by_default_and_learned_when_vouched() -> None:
    probabilities, anomaly = _site_with_a_rare_event()
    guarded = compute_site(probabilities, anomaly)
    assert guarded.excluded == 100
    assert not guarded.attack_free
    assert guarded.thresholds["flood"] < 0.9  # the event would still be raised
    assert (guarded.anomaly_threshold or 0) < 40.0
    vouched = compute_site(probabilities, anomaly, attack_free=True)
    assert vouched.excluded == 0
    assert vouched.attack_free
    assert vouched.windows == len(probabilities)
    # the margin past the highest each reached (the period saw the event once: one draw), so
    # the event no longer hits, nor does it a little higher; a flood far above it does
    assert vouched.thresholds["flood"] == pytest.approx(_odds_past(0.9))  # 0.947 at 2 x
    assert vouched.thresholds["flood"] > 0.9
    assert vouched.anomaly_threshold == pytest.approx(START_MARGIN * 40.0)


def test_a_vouched_period_still_never_lowers_a_threshold_below_the_signed_one() -> None:
    n = 2000
    probabilities = np.column_stack((np.full(n, 0.99), np.full(n, 0.01)))
    found = compute_site(probabilities, np.full(n, 0.01), attack_free=True)
    assert found.thresholds == {"flood": 0.5}
    assert found.anomaly_threshold == 1.0


def test_the_stream_start_keeps_its_own_rules_when_vouched() -> None:
    probabilities, _ = _site_with_a_rare_event()
    probabilities[:10] = (0.01, 0.99)  # the site's boot read as a flood
    steady = np.ones(len(probabilities), bool)
    steady[:10] = False
    found = compute_site(
        probabilities,
        attack_free=True,
        steady=steady,
        start_probabilities=probabilities[:10],
    )
    # the boot's 0.99 does not set the steady threshold; it quiets the stream's start instead
    assert found.thresholds["flood"] == pytest.approx(_odds_past(0.9))
    assert found.thresholds["flood"] < _odds_past(0.99)
    assert found.start_quiet_windows == cal.START_WINDOWS


def test_a_label_at_the_int8_top_in_a_vouched_period_is_silenced_and_says_so() -> None:
    n = 500
    flood = np.full(n, 0.1)
    flood[7] = 255 / 256
    found = compute_site(np.column_stack((1 - flood, flood)), attack_free=True)
    assert found.thresholds["flood"] == cal.SILENCED
    assert cal.silenced(found.thresholds) == ["flood"]
    flood[7] = 254 / 256  # one int8 step under the top: the margin leaves only the top above
    near = compute_site(np.column_stack((1 - flood, flood)), attack_free=True)
    assert 254 / 256 < near.thresholds["flood"] < 255 / 256


def test_grouped_edges_sit_past_each_groups_highest_ratio() -> None:
    rng = np.random.default_rng(8)
    n = 5000
    raw = rng.lognormal(0.0, 0.2, n)
    ratios = rng.uniform(0.1, 0.5, (n, 3))
    ratios[100, 1] = 7.0  # one group reached 7 times its signed edge once
    anomaly = np.column_stack((raw, ratios))
    probabilities = np.column_stack((np.full(n, 0.9), np.full(n, 0.1)))
    guarded = compute_site(probabilities, anomaly)
    vouched = compute_site(probabilities, anomaly, attack_free=True)
    assert guarded.group_thresholds is not None
    assert vouched.group_thresholds is not None
    assert guarded.group_thresholds[1] < 7.0
    assert vouched.group_thresholds[1] == pytest.approx(START_MARGIN * 7.0)
    assert vouched.group_thresholds[0] == vouched.group_thresholds[2] == 1.0  # never below


def test_the_flag_round_trips_and_a_bad_one_is_refused() -> None:
    found = compute_site(np.column_stack((np.full(500, 0.9), np.full(500, 0.1))), attack_free=True)
    assert cal.SiteCalibration.from_dict(found.to_dict()) == found
    older = {k: v for k, v in found.to_dict().items() if k != "attack_free"}
    assert cal.SiteCalibration.from_dict(older).attack_free is False
    with pytest.raises(cal.CalibrationError, match="attack_free: expected true or false"):
        cal.SiteCalibration.from_dict(found.to_dict() | {"attack_free": "yes"})


def test_the_collector_marks_the_stream_start_apart() -> None:
    collector = Collector(labels=2, capacity=50)
    n = 30
    collector.add(
        np.arange(n, dtype=np.int64),
        np.zeros((n, 2)),
        None,
        np.zeros(n, bool),
        np.arange(n, dtype=np.int64),
        np.arange(n) < 12,  # the start period ran 12 windows (its seconds outlasted 10)
    )
    assert collector.steady[:n].tolist() == [False] * 12 + [True] * 18


def test_config_key_is_a_boolean() -> None:
    agent = {"agent": {"device_id": "gw"}}
    config = parse_config(agent | {"calibration": {"attack_free": True}})
    assert config.calibration is not None
    assert config.calibration.attack_free is True
    default = parse_config(agent | {"calibration": {}})
    assert default.calibration is not None
    assert default.calibration.attack_free is False
    with pytest.raises(ConfigError, match=r"calibration\.attack_free: must be true or false"):
        parse_config(agent | {"calibration": {"attack_free": "yes"}})


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> tuple[FloodKit, PairKit]:
    kit = flood_kit(tmp_path_factory.mktemp("flood"))
    return kit, pair_kit(kit, tmp_path_factory.mktemp("pairs"))


def test_the_cli_flag_learns_the_capture_whole(
    pairs: tuple[FloodKit, PairKit], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the same capture, flood and all, that the default calibration keeps detecting: vouched
    # attack-free, its flood is learned as the site's own and replays quiet
    kit, pair = pairs
    common = ("--bundle", str(pair.paired), "--trust-key", str(kit.public_key))
    capture = ("--capture", str(pair.long_capture))
    out = tmp_path / "cal.json"
    vouch = ("--out", str(out), "--attack-free")
    assert iotids(["agent", "calibrate", *common, *capture, *vouch]) == 0
    assert "vouched attack-free" in capsys.readouterr().err
    found = cal.load(out)
    assert found.attack_free
    assert found.excluded == 0
    code = iotids(["agent", "replay", *common, *capture, "--calibration", str(out), "--json"])
    assert code == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e for e in events if e["type"] == "new"] == []


def test_the_live_agent_calibrates_vouched_and_reports_it(
    pairs: tuple[FloodKit, PairKit], tmp_path: Path
) -> None:
    kit, pair = pairs
    calibration = {"duration": "4m", "attack_free": True}
    config_data = calibrating_config(kit, pair, tmp_path / "state", calibration)
    sink = run_to_end(config_data)
    saved = cal.load(tmp_path / "state" / "calibration-cnn.json")
    assert saved.attack_free
    assert saved.excluded == 0
    reported = sink.models[-1]["calibration"]
    assert reported["state"] == "calibrated"
    assert reported["attack_free"] is True
