"""The classifier's own ``unknown``: not benign, yet no attack class confident (no benign model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent import calibration as cal
from agent.bundle import Bundle, load_bundle, load_public_key
from agent.classifier_unknown import EDGE, ClassifierUnknown, scores
from agent.decide import DecisionPolicy
from agent.features.traffic import TRAFFIC_V1
from agent.inference import Debounce, policy_for
from agent.replay import replay_capture
from tests.agent.bundles import bundle_bytes, manifest_for
from tests.agent.flood_bundle import FloodKit, flood_kit


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> FloodKit:
    return flood_kit(tmp_path_factory.mktemp("flood"))


def _unsure(kit: FloodKit, folder: Path) -> Bundle:
    """The flood classifier with its flood threshold above 1: never confident of the flood."""
    manifest = manifest_for(
        kit.model, TRAFFIC_V1, signer=kit.signer, thresholds={"flood": 1.5}, bundle_id="unsure"
    )
    path = folder / "unsure.bundle"
    path.write_bytes(bundle_bytes(manifest, kit.model, kit.signer))  # type: ignore[arg-type]
    return load_bundle(path, [load_public_key(kit.public_key)])


# --- the rule (numbers) ------------------------------------------------------------------------


def test_unknown_scores_not_benign_only_where_no_attack_class_is_confident() -> None:
    probabilities = np.array(
        [
            [0.02, 0.9, 0.08],  # a confident attack class: that class, no unknown
            [0.02, 0.5, 0.48],  # spread over attack labels under their thresholds: unknown
            [0.97, 0.02, 0.01],  # benign
            [np.nan, 0.1, 0.1],  # broken: NaN, which reaches no edge
        ]
    )
    column = scores(probabilities, benign=[0], watched=[1, 2], thresholds=[0.5, 0.8, 0.8])
    assert column[0] == 0.0
    assert column[1] == pytest.approx(0.98)
    assert column[2] == pytest.approx(0.03)
    assert np.isnan(column[3])
    assert not column[3] >= EDGE


def test_benign_labels_add_up_and_a_policy_needs_benign_and_attack_labels() -> None:
    both = DecisionPolicy(("benign", "normal", "scan"), ("benign", "benign", "scan"), (0.5,) * 3)
    unknown = ClassifierUnknown.of(both)
    assert unknown is not None
    assert (unknown.benign, unknown.watched) == ((0, 1), (2,))
    fused = unknown.fuse(np.array([[0.01, 0.02, 0.4]]))
    assert fused.shape == (1, 4)
    assert fused[0, 3] == pytest.approx(0.97)
    assert unknown.extend(both).labels == ("benign", "normal", "scan", "unknown")
    attacks_only = DecisionPolicy(("scan", "flood"), ("scan", "flood"), (0.5, 0.5))
    assert ClassifierUnknown.of(attacks_only) is None  # nothing says what benign is
    benign_only = DecisionPolicy(("benign",), ("benign",), (0.5,))
    assert ClassifierUnknown.of(benign_only) is None


# --- through the real interpreter and the agent's replay -----------------------------------------


def test_an_unsure_classifier_raises_unknown_on_a_flood_and_nothing_on_calm_traffic(
    kit: FloodKit, tmp_path: Path
) -> None:
    events = replay_capture(_unsure(kit, tmp_path), kit.capture).events
    news = [e for e in events if e.kind == "new"]
    assert [(e.label, e.category) for e in news] == [("unknown", "unknown")]
    assert news[0].score >= EDGE
    # not on the calm seconds before; the int8 model's benign falls to 0.05 at the third window
    assert 0 < news[0].time_ns / 1e9 - kit.flood_start <= 5.0
    assert events[-1].kind == "end"


def test_a_confident_class_is_raised_as_itself_not_as_unknown(kit: FloodKit) -> None:
    bundle = load_bundle(kit.bundle, [load_public_key(kit.public_key)])
    news = [e for e in replay_capture(bundle, kit.capture).events if e.kind == "new"]
    assert [e.label for e in news] == ["flood"]


# --- site calibration ---------------------------------------------------------------------------


def _calibrate(probabilities: np.ndarray) -> cal.SiteCalibration:
    return cal.compute(
        bundle_id="b",
        labels=("benign", "scan", "flood"),
        watched=[1, 2],
        signed=(0.5, 0.8, 0.8),
        probabilities=probabilities,
        anomaly=None,
        anomaly_floor=None,
        seconds=3600.0,
        target_per_day=1.0,
        unknown_edge=EDGE,
    )


def test_a_site_whose_everyday_windows_look_un_benign_raises_the_unknown_edge() -> None:
    rng = np.random.default_rng(0)
    # another network: the classifier gives benign only 0-10 %, the rest spread over the
    # attack labels, none confident (as the training network's classifier does elsewhere)
    benign = rng.uniform(0.0, 0.1, 3600)
    scan = (1 - benign) * rng.uniform(0.3, 0.7, 3600)
    site = np.column_stack((benign, scan, 1 - benign - scan))
    raised = _calibrate(site)
    assert raised.thresholds["unknown"] > 0.99
    # windows scoring the top (benign exactly 0) more often than the target rate: silenced
    zero = np.column_stack((np.zeros(3600), np.full(3600, 0.5), np.full(3600, 0.5)))
    assert _calibrate(zero).thresholds["unknown"] == cal.SILENCED
    assert scores(zero, [0], [1, 2], [0.5, 0.8, 0.8]).max() < 1.0
    assert raised.flagged_fraction > cal.MAX_EXCLUDED  # that IS the site's normal: calibrated on
    calm = np.column_stack((np.full(3600, 0.98), np.full(3600, 0.01), np.full(3600, 0.01)))
    assert _calibrate(calm).thresholds["unknown"] == EDGE  # never below the signed edge


def test_the_slot_decides_unknown_at_the_calibrated_edge(kit: FloodKit, tmp_path: Path) -> None:
    bundle = _unsure(kit, tmp_path)
    signed = policy_for(bundle, Debounce())
    assert signed.labels[-1] == "unknown"
    assert signed.thresholds[-1] == EDGE
    raised = {}
    for edge in (0.96, 0.99):  # the flood's windows leave benign 0.023: 1 - p = 0.977
        calibration = cal.SiteCalibration(
            bundle.manifest.bundle_id, {"unknown": edge}, None, 1.0, 100, 0, 0.0, 60.0
        )
        assert policy_for(bundle, Debounce(), calibration).thresholds[-1] == edge
        events = replay_capture(bundle, kit.capture, calibration=calibration).events
        raised[edge] = [e.label for e in events if e.kind == "new"]
    assert raised == {0.96: ["unknown"], 0.99: []}


def test_unknown_hits_raise_only_unknown_never_lift_a_weak_class() -> None:
    from agent.decide import Decider, Evidence

    base = DecisionPolicy(("benign", "scan"), ("benign", "scan"), (0.5, 0.5), raise_k=2)
    unknown = ClassifierUnknown.of(base)
    assert unknown is not None
    policy = unknown.extend(base)
    assert policy.solo == (2,)
    windows = [
        [0.02, 0.4, 0.98],  # not benign, no class confident: an unknown hit
        [0.3, 0.7, 0.0],  # one scan hit: with the unknown hit before, 2 of 3 "any label"
    ]
    decider = Decider(policy, "m", "lan")
    news = [
        e
        for t, w in enumerate(windows)
        for e in decider.observe(t * 10**9, np.array(w), Evidence())
        if e.kind == "new"
    ]
    assert news == []  # scan needs its own 2 of 3; unknown's one hit is not scan's
    third = decider.observe(2 * 10**9, np.array([0.02, 0.4, 0.98]), Evidence())
    assert [e.label for e in third if e.kind == "new"] == ["unknown"]  # its own 2 of 3
