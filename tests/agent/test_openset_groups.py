"""Feature groups of the benign model: a few-feature deviation stands out in its group after a
site calibration that the window's one mean score hides it under; before one, a grouped model
reads exactly as an ungrouped one; a hostile section or calibration file is refused in one
line."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent import calibration as cal
from agent.benign_groups import MAX_GROUPS, TRAFFIC_GROUPS, Group, Groups, group_columns
from agent.bundle import BundleError, Manifest, Scaler, load_bundle, load_public_key
from agent.calibration_collect import Collector
from agent.features.traffic import TRAFFIC_V1
from agent.openset import BenignModel, Fusion, OpenSetSpec, describe, load_benign_model
from agent.runtime import Model
from converters.openset import pair
from tests.agent.flood_bundle import FloodKit, flood_kit
from tests.agent.openset_kit import benign_spec, zero_benign_model

COLUMNS = TRAFFIC_V1.columns
WIDTH = TRAFFIC_V1.width
EDGE = 0.02  # the signed edge of the mean score and of every group's score
RAW_MAX = 100.0  # the benign scaler's range of every feature
# the site's everyday spread: these groups' features burst to near the top of their range
BUSY = ("volume", "protocols", "services", "tcp_flags", "addressing")


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> FloodKit:
    return flood_kit(tmp_path_factory.mktemp("flood"))


@pytest.fixture(scope="module")
def zero_model(kit: FloodKit) -> bytes:
    return zero_benign_model(kit.folder)


def _spec(model: bytes, grouped: bool) -> OpenSetSpec:
    """The zero model (its error is the scaled summary squared) over a 0..100 range."""
    scaler = Scaler("minmax", (0.0,) * WIDTH, (RAW_MAX,) * WIDTH, (0.0,) * WIDTH, (1e12,) * WIDTH)
    base = dataclasses.replace(benign_spec(model), scaler=scaler, threshold=EDGE)
    if not grouped:
        return base
    named = group_columns(COLUMNS)
    groups = Groups(10.0, tuple(Group(n, cs, EDGE) for n, cs in named.items()), 2.0, 4)
    return dataclasses.replace(base, groups=groups)


def _windows(rng: np.random.Generator, n: int, busy: bool) -> np.ndarray:
    """Calm windows (every feature 0..10 of 100), or with the busy groups' features at 80..100."""
    x = rng.uniform(0.0, 10.0, (n, 4, WIDTH))
    if busy:
        cols = [COLUMNS.index(c) for g in BUSY for c in TRAFFIC_GROUPS[g]]
        x[:, :, cols] = rng.uniform(80.0, 100.0, (n, 4, len(cols)))
    return x.astype(np.float32)


def _calibrate(benign: BenignModel, site: np.ndarray) -> cal.SiteCalibration:
    anomaly = benign.scores(site)
    return cal.compute(
        bundle_id="b",
        labels=("benign",),
        watched=(),
        signed=(0.5,),
        probabilities=np.zeros((len(site), 1)),
        anomaly=anomaly,
        anomaly_floor=benign.spec.threshold,
        seconds=float(len(site)),
        target_per_day=1.0,
        window=4,
    )


def _fusion(benign: BenignModel, found: cal.SiteCalibration) -> Fusion:
    assert found.anomaly_threshold is not None
    return Fusion(
        watched=(),
        thresholds=(0.5,),
        anomaly_threshold=found.anomaly_threshold,
        gate_threshold=benign.spec.threshold,
        group_edges=found.group_thresholds,
    )


def test_every_traffic_column_is_in_exactly_one_group() -> None:
    named = group_columns(COLUMNS)
    listed = [c for cs in named.values() for c in cs]
    assert sorted(listed) == sorted(COLUMNS)
    assert named["arp"] == ("arp", "arp_reply")
    # a feature set with a column no group names: that column is a group of its own
    assert group_columns(("packets", "volts")) == {"volume": ("packets",), "volts": ("volts",)}


def test_an_arp_poisoning_hidden_by_the_mean_stands_out_in_its_group(zero_model: bytes) -> None:
    rng = np.random.default_rng(0)
    calm, busy = _windows(rng, 1800, False), _windows(rng, 200, True)
    site = np.concatenate((calm, busy))[rng.permutation(2000)]
    attack = _windows(rng, 5, False)
    attack[:, :, [COLUMNS.index("arp"), COLUMNS.index("arp_reply")]] = RAW_MAX
    results = {}
    for grouped in (False, True):
        benign = BenignModel(_spec(zero_model, grouped), Model(zero_model), COLUMNS)
        found = _calibrate(benign, site)
        fusion = _fusion(benign, found)
        signed_r = Fusion((), (0.5,), benign.spec.threshold, benign.spec.threshold).ratios(
            benign.scores(attack)
        )[1]
        calm_r = fusion.ratios(benign.scores(_windows(rng, 200, False)))[1]
        results[grouped] = (signed_r, fusion.ratios(benign.scores(attack))[1], calm_r, found)
    mean_signed, mean_cal, mean_calm, mean_found = results[False]
    group_signed, group_cal, group_calm, group_found = results[True]
    assert np.all(mean_signed > 1.0)
    # before a calibration: the one score against the one signed edge, as without groups
    np.testing.assert_array_equal(group_signed, mean_signed)
    assert mean_found.anomaly_threshold is not None
    assert mean_found.anomaly_threshold > 5 * EDGE  # the bursts raised the one edge...
    assert np.all(mean_cal < 1.0)  # ...over the attack: missed after calibration
    assert np.all(group_cal > 3.0)  # per group: far beyond the ARP group's edge
    assert np.all(mean_calm < 1.0)
    assert np.all(group_calm < 1.0)
    # the site's spread raised its own groups' edges, not the ARP group's
    assert group_found.group_thresholds is not None
    edges = dict(zip(group_columns(COLUMNS), group_found.group_thresholds, strict=True))
    assert all(edges[g] > 5.0 for g in BUSY)
    assert edges["arp"] == 1.0  # the signed floor


def test_the_error_reads_past_the_benign_range_up_to_the_signed_range(zero_model: bytes) -> None:
    benign = BenignModel(_spec(zero_model, True), Model(zero_model), COLUMNS)
    arp = list(group_columns(COLUMNS)).index("arp")
    windows = np.zeros((3, 4, WIDTH), np.float32)
    windows[:, :, COLUMNS.index("arp_reply")] = np.array([1.0, 5.0, 1e6])[:, None] * RAW_MAX
    scores = benign.scores(windows)[:, 1 + arp] * EDGE  # back to the raw group score
    np.testing.assert_allclose(scores, [1.0, 25.0, 100.0], rtol=1e-5)  # x squared, x <= 10


def test_grouped_fusion_reads_the_one_score_until_a_calibration_brings_group_edges() -> None:
    signed = Fusion(
        watched=(1,),
        thresholds=(0.5, 0.5),
        anomaly_threshold=2.0,
        gate_threshold=2.0,
        start_threshold=10.0,
        start_windows=2,
    )
    calibrated = dataclasses.replace(signed, start_threshold=5.0, group_edges=(1.0, 4.0))
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1], [0.1, 0.9], [0.9, 0.1]])
    # the raw score, then the ratios to the signed group edges
    anomaly = np.array([[1.0, 0.5, 3.0], [4.0, 2.0, 0.1], [3.0, 0.2, 3.0], [1.0, np.nan, 9.0]])
    steady = np.array([50, 50, 50, 50])
    _, ratio = signed.ratios(anomaly, steady)
    np.testing.assert_allclose(ratio, [0.5, 2.0, 1.5, 0.5])  # raw / 2: the groups unread
    _, ratio = calibrated.ratios(anomaly, steady)
    np.testing.assert_allclose(ratio[:3], [0.75, 2.0, 0.75])  # the largest ratio to the site's
    fused = calibrated.fuse(probabilities, anomaly, steady)
    assert fused[0, 2] == 0.0  # 3 / 4: within its group's calibrated edge
    assert fused[1, 2] == pytest.approx(2.0 / 3.0)  # r = 2 in the first group
    assert fused[2, 1] == pytest.approx(0.9)  # the raw score past the signed gate: it stands
    assert np.all(fused[3] == 0.0)  # a NaN group score is never far
    # a stream's first windows: each path's start edge only quiets (the calibrated one reads
    # the largest ratio to the signed group edges)
    start = np.array([[40.0, 0.5, 9.0], [40.0, 0.5, 20.0], [1.0, 0.5, 2.0]])
    first = np.array([0, 1, 1])
    np.testing.assert_allclose(signed.ratios(start, first)[1], [4.0, 4.0, 0.1])  # 40 / 10
    np.testing.assert_allclose(calibrated.ratios(start, first)[1], [1.8, 4.0, 0.4])
    np.testing.assert_allclose(calibrated.ratios(start, steady[:3])[1], [2.25, 5.0, 0.5])


def test_old_sections_stay_one_score_and_grouped_ones_round_trip(
    kit: FloodKit, zero_model: bytes, tmp_path: Path
) -> None:
    for grouped in (False, True):
        out = tmp_path / f"{grouped}.bundle"
        pair(kit.bundle, zero_model, _spec(zero_model, grouped), kit.signer, out)  # type: ignore[arg-type]
        benign = load_benign_model(load_bundle(out, [load_public_key(kit.public_key)]))
        assert benign is not None
        windows = _windows(np.random.default_rng(1), 3, False)
        shape = (3, 1 + len(group_columns(COLUMNS))) if grouped else (3,)
        assert benign.scores(windows).shape == shape
        assert (benign.spec.groups is not None) == grouped
        described = describe(load_bundle(out, [load_public_key(kit.public_key)]).manifest)
        assert described is not None
        if grouped:
            assert benign.spec.groups == _spec(zero_model, True).groups
            assert described["groups"] == list(group_columns(COLUMNS))  # on the model topic
        else:
            assert "groups" not in described


def _manifest_with(kit: FloodKit, zero_model: bytes, groups: Any) -> Manifest:
    from agent.bundle import read_bundle

    manifest = Manifest.from_json(read_bundle(kit.bundle).manifest_bytes)
    section = _spec(zero_model, True).to_dict()
    section["groups"] = groups
    return dataclasses.replace(manifest, extra={**manifest.extra, "openset": section})


GOOD = {
    "range": 10.0,
    "list": [{"name": "arp", "columns": ["arp"], "threshold": 1.0}],
    "start_threshold": 2.0,
    "start_windows": 4,
}


def _with(**changes: Any) -> dict[str, Any]:
    bad = json.loads(json.dumps(GOOD))
    for key, value in changes.items():
        if key in ("range", "start_threshold", "start_windows"):
            bad[key] = value
        else:
            bad["list"][0][key] = value
    return bad


@pytest.mark.parametrize(
    ("groups", "words"),
    [
        ([], "groups: expected an object"),
        (_with(range=0.5), "groups.range"),
        (_with(range=float("inf")), "groups.range"),
        (_with(range=True), "groups.range"),
        ({"range": 10.0, "list": []}, "groups.list"),
        ({"range": 10.0, "list": [GOOD["list"][0]] * (MAX_GROUPS + 1)}, "groups.list"),
        ({"range": 10.0, "list": ["arp"]}, "groups.list[0]: expected an object"),
        (_with(name=""), "groups.list[0].name"),
        (_with(name="x" * 41), "groups.list[0].name"),
        (_with(columns=[]), "groups.list[0].columns"),
        (_with(columns=["volts"]), "'volts' is not a column"),
        (_with(columns=["arp", "arp"]), "is not a column or is in 2 groups"),
        (_with(columns=[7]), "groups.list[0].columns"),
        (_with(threshold=0), "groups.list[0].threshold"),
        (_with(threshold=-1.0), "groups.list[0].threshold"),
        (_with(threshold="1"), "groups.list[0].threshold"),
        (_with(start_threshold=0.5), "groups.start_threshold"),
        (_with(start_threshold=101.0), "groups.start_threshold"),
        (_with(start_threshold=float("nan")), "groups.start_threshold"),
        (_with(start_threshold="2"), "groups.start_threshold"),
        (_with(start_windows=0), "groups.start_windows"),
        (_with(start_windows=11), "groups.start_windows"),
        (_with(start_windows=True), "groups.start_windows"),
        (_with(start_windows=None), "groups.start_windows"),
        (_with(start_threshold=None), "groups.start_windows: given without a start_threshold"),
    ],
)
def test_a_hostile_groups_section_is_one_bundle_error(
    kit: FloodKit, zero_model: bytes, groups: Any, words: str
) -> None:
    manifest = _manifest_with(kit, zero_model, groups)
    with pytest.raises(BundleError, match=r"extra\.openset\.groups") as caught:
        OpenSetSpec.from_manifest(manifest)
    assert words in str(caught.value)
    assert "\n" not in str(caught.value)


def test_two_groups_may_not_share_a_name(kit: FloodKit, zero_model: bytes) -> None:
    item = GOOD["list"][0]
    twice = {"range": 10.0, "list": [item, {**item, "columns": ["arp_reply"]}]}
    with pytest.raises(BundleError, match=r"list\[1\]\.name: expected a unique name"):
        OpenSetSpec.from_manifest(_manifest_with(kit, zero_model, twice))


def test_group_edges_round_trip_in_a_calibration_file_and_bad_ones_are_refused(
    tmp_path: Path,
) -> None:
    found = cal.SiteCalibration("b", {}, 1.0, 1.0, 100, 0, 0.0, 10.0, group_thresholds=(1.0, 7.5))
    path = tmp_path / "cal.json"
    cal.save(found, path)
    assert cal.load(path).group_thresholds == (1.0, 7.5)
    raw = found.to_dict()
    for bad in ([], [1.0] * (MAX_GROUPS + 1), [0.0], ["1"], [float("nan")], {"arp": 1.0}):
        with pytest.raises(cal.CalibrationError, match="group_thresholds"):
            cal.SiteCalibration.from_dict({**raw, "group_thresholds": bad})
    with pytest.raises(cal.CalibrationError, match="group_thresholds"):
        cal.SiteCalibration.from_dict({**raw, "anomaly_threshold": None})
    older = {k: v for k, v in raw.items() if k != "group_thresholds"}
    assert cal.SiteCalibration.from_dict(older).group_thresholds is None


def test_the_collector_keeps_one_score_per_group() -> None:
    collector = Collector(labels=1, capacity=50)
    ends = np.arange(80, dtype=np.int64) * 1_000_000_000
    scores = np.stack((np.arange(80.0), np.arange(80.0) * 2), axis=1)
    collector.add(ends, np.zeros((80, 1)), scores, np.zeros(80, bool), np.arange(80))
    assert collector.anomaly.shape == (50, 2)
    np.testing.assert_allclose(collector.anomaly[:, 1], collector.anomaly[:, 0] * 2)
    held = collector.start_anomaly[:, 0]
    np.testing.assert_array_equal(held[: cal.START_WINDOWS], np.arange(cal.START_WINDOWS))
    assert np.isnan(held[cal.START_WINDOWS :]).all()


def _grouped_unsure(kit: FloodKit, folder: Path) -> Any:
    """The never-confident classifier with the kit's benign model, grouped: only ``unknown``."""
    from tests.agent.openset_kit import THRESHOLD, pair_kit

    pairs = pair_kit(kit, folder)
    spec = benign_spec(pairs.benign_model)
    named = group_columns(COLUMNS)
    groups = Groups(10.0, tuple(Group(n, cs, THRESHOLD) for n, cs in named.items()))
    out = folder / "grouped-unsure.bundle"
    grouped = dataclasses.replace(spec, groups=groups)
    pair(
        pairs.unsure.parent / "unsure-classifier.bundle",
        pairs.benign_model,
        grouped,
        kit.signer,
        out,
    )  # type: ignore[arg-type]
    return load_bundle(out, [load_public_key(kit.public_key)]), pairs.long_capture


def test_the_agent_applies_a_calibrations_group_edges_and_ignores_ill_fitting_ones(
    kit: FloodKit, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from agent.calibrate_cli import calibrate_bundle
    from agent.replay import replay_capture

    bundle, capture = _grouped_unsure(kit, tmp_path)
    names = list(group_columns(COLUMNS))

    def unknowns(calibration: cal.SiteCalibration | None) -> int:
        events = replay_capture(bundle, capture, calibration=calibration).events
        return sum(e.kind == "new" and e.label == "unknown" for e in events)

    assert unknowns(None) == 1  # the flood, through the packet count's group
    found = calibrate_bundle(bundle, str(capture), 1.0)  # the real collection, one row a window
    assert found.group_thresholds is not None
    assert len(found.group_thresholds) == len(names)
    deaf = [1e9 if n == "volume" else 1.0 for n in names]
    quiet = dataclasses.replace(found, group_thresholds=tuple(deaf))
    assert unknowns(quiet) == 0  # the flood's group raised past it: that site's normal
    misfit = dataclasses.replace(quiet, group_thresholds=(1e9, 1e9))
    assert unknowns(misfit) == 1  # ignored: the signed edges again
    assert "group edges do not fit the bundle" in caplog.text
