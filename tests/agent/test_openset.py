"""Open set: the benign model beside the classifier, through the real interpreter and agent path."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from agent.app import replay_capture
from agent.bundle import BundleError, load_bundle, load_public_key
from agent.cli import main as iotids
from agent.features.traffic import TRAFFIC_V1
from agent.inference import Debounce, ModelSlot
from agent.openset import UNKNOWN, Fusion, load_benign_model
from tests.agent.flood_bundle import FloodKit, flood_kit
from tests.agent.openset_kit import PairKit, pair_kit


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> FloodKit:
    return flood_kit(tmp_path_factory.mktemp("flood"))


@pytest.fixture(scope="module")
def pairs(kit: FloodKit, tmp_path_factory: pytest.TempPathFactory) -> PairKit:
    return pair_kit(kit, tmp_path_factory.mktemp("pairs"))


def _load(path: Path, kit: FloodKit) -> object:
    return load_bundle(path, [load_public_key(kit.public_key)])


def _news(bundle: object, capture: Path) -> list[object]:
    return [e for e in replay_capture(bundle, capture).events if e.kind == "new"]  # type: ignore[arg-type]


# --- fusion rules (numbers) --------------------------------------------------------------------


def test_fusion_rules_unknown_gated_and_confirmed() -> None:
    fusion = Fusion(
        watched=(1, 2), thresholds=(0.5, 0.8, 0.8), anomaly_threshold=2.0, gate_threshold=2.0
    )
    probabilities = np.array(
        [
            [0.1, 0.9, 0.0],  # confident class, far from benign: that class
            [0.1, 0.9, 0.0],  # confident class, normal: nothing
            [0.9, 0.05, 0.05],  # benign class, far: unknown
            [0.3, 0.4, 0.3],  # nothing confident, far: unknown
            [0.3, 0.4, 0.3],  # nothing confident, NaN score: nothing
        ]
    )
    anomaly = np.array([6.0, 1.0, 2.0, 8.0, np.nan])
    fused = fusion.fuse(probabilities, anomaly)
    assert fused.shape == (5, 4)
    assert fused[0, 1] == pytest.approx(0.9)
    assert fused[0, 3] == 0.0
    assert np.all(fused[1] == 0.0)
    assert fused[2, 3] == pytest.approx(0.5)  # r = 1: the edge of benign scores 0.5
    assert fused[3, 3] == pytest.approx(0.8)  # r = 4: 4 / 5
    assert np.all(fused[4] == 0.0)


def test_a_calibrated_unknown_edge_does_not_silence_known_classes() -> None:
    fusion = Fusion(watched=(1,), thresholds=(0.5, 0.5), anomaly_threshold=50.0, gate_threshold=2.0)
    fused = fusion.fuse(np.array([[0.1, 0.9], [0.9, 0.1]]), np.array([10.0, 10.0]))
    assert fused[0, 1] == pytest.approx(0.9)  # beyond the signed edge: the known class stands
    assert fused[1, 2] == 0.0  # below the site's edge: no unknown


# --- through the real agent path ----------------------------------------------------------------


def test_far_from_benign_and_a_confident_class_raises_that_class(
    kit: FloodKit, pairs: PairKit
) -> None:
    bundle = _load(pairs.paired, kit)
    news = _news(bundle, kit.capture)
    assert news, "the flood raised nothing"
    assert news[0].label == "flood"  # type: ignore[attr-defined]
    assert bundle.manifest.bundle_id.startswith("flood-int8-test+benign-")  # type: ignore[attr-defined]


def test_a_confident_class_the_benign_model_calls_normal_is_not_an_alarm(
    kit: FloodKit, pairs: PairKit
) -> None:
    alone = _news(_load(kit.bundle, kit), kit.capture)
    assert [e.label for e in alone] == ["flood"]  # type: ignore[attr-defined]
    assert _news(_load(pairs.deaf, kit), kit.capture) == []


def test_far_from_benign_with_no_confident_class_is_unknown(kit: FloodKit, pairs: PairKit) -> None:
    events = replay_capture(_load(pairs.unsure, kit), kit.capture).events  # type: ignore[arg-type]
    news = [e for e in events if e.kind == "new"]
    assert [e.label for e in news] == [UNKNOWN]
    assert news[0].category == "unknown"
    assert 0.5 <= news[0].score < 1.0
    assert 0 < news[0].time_ns / 1e9 - kit.flood_start <= 3.0
    assert events[-1].kind == "end"


def test_a_single_model_bundle_decides_unknown_from_its_classifier(kit: FloodKit) -> None:
    bundle = _load(kit.bundle, kit)
    assert load_benign_model(bundle) is None  # type: ignore[arg-type]
    slot = ModelSlot("m", "lan", TRAFFIC_V1, bundle.manifest.step, bundle, Debounce())  # type: ignore[attr-defined]
    assert slot.decider.policy.labels == ("benign", "flood", "unknown")
    assert slot.benign is None
    assert slot.classifier_unknown


def _rewrite(bundle: Path, out: Path, *, drop: str = "", replace: bytes | None = None) -> Path:
    source = zipfile.ZipFile(io.BytesIO(bundle.read_bytes()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name in source.namelist():
            if name == drop:
                continue
            data = source.read(name)
            if name == "anomaly.tflite" and replace is not None:
                data = replace
            archive.writestr(name, data)
    out.write_bytes(buffer.getvalue())
    return out


def test_a_swapped_or_missing_benign_model_is_refused_in_one_line(
    kit: FloodKit, pairs: PairKit, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    swapped = _rewrite(pairs.paired, tmp_path / "swapped.bundle", replace=kit.model)
    missing = _rewrite(pairs.paired, tmp_path / "missing.bundle", drop="anomaly.tflite")
    for path, words in ((swapped, "sha256/size mismatch"), (missing, "missing anomaly.tflite")):
        with pytest.raises(BundleError, match=words):
            load_benign_model(_load(path, kit))  # type: ignore[arg-type]
        code = iotids(
            [
                *("agent", "replay", "--bundle", str(path), "--capture", str(kit.capture)),
                *("--trust-key", str(kit.public_key)),
            ]
        )
        assert code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert words in err[-1]
        assert "Traceback" not in "".join(err)


def test_the_pair_is_one_signature_and_the_section_is_signed(kit: FloodKit, pairs: PairKit) -> None:
    archive = zipfile.ZipFile(pairs.paired)
    assert sorted(archive.namelist()) == [
        "anomaly.tflite",
        "manifest.json",
        "manifest.sig",
        "model.tflite",
    ]
    manifest = json.loads(archive.read("manifest.json"))
    section = manifest["extra"]["openset"]
    assert section["input"] == "summary-v1"
    assert section["threshold"] > 0
    altered = archive.read("manifest.json").replace(b'"threshold": 0.005', b'"threshold": 1e9')
    assert altered != archive.read("manifest.json")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as out:
        for name in archive.namelist():
            out.writestr(name, altered if name == "manifest.json" else archive.read(name))
    with pytest.raises(BundleError, match="signature"):
        load_bundle(buffer.getvalue(), [load_public_key(kit.public_key)])
