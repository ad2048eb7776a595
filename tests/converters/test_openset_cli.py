"""``iotids openset``: train a benign model on a dataset's benign windows and pair it."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from agent.bundle import load_bundle, load_public_key
from agent.cli import main as iotids
from agent.openset import load_benign_model
from tests.agent.flood_bundle import flood_kit


@pytest.mark.tf
@pytest.mark.slow
def test_openset_pairs_a_classifier_with_an_int8_benign_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("tensorflow")
    from converters.signing import generate_keypair
    from training.synth.scenario import preset
    from training.synth.traffic import generate_traffic

    kit = flood_kit(tmp_path / "flood")
    data = tmp_path / "benign"
    generate_traffic(preset("benign").with_overrides(duration=400.0), data)
    private, public, _ = generate_keypair(tmp_path / "release")
    out = tmp_path / "paired.bundle"
    args = ["openset", "--bundle", str(kit.bundle), "--dataset", "synthetic", "--path", str(data)]
    code = iotids([*args, "--sign-key", str(private), "--out", str(out), "--epochs", "5"])
    assert code == 0, capsys.readouterr().err
    assert f"wrote {out}" in capsys.readouterr().out
    bundle = load_bundle(out, [load_public_key(public)])
    benign = load_benign_model(bundle)
    assert benign is not None
    assert benign.model.input_dtype == "int8"  # full int8, like the classifier
    assert benign.spec.threshold > 0
    # scored per feature group by default, every column in one group, each with its own edge
    assert benign.spec.groups is not None
    grouped = [c for g in benign.spec.groups.groups for c in g.columns]
    assert sorted(grouped) == sorted(bundle.manifest.columns)
    assert all(g.threshold >= 1.0 for g in benign.spec.groups.groups)
    assert bundle.manifest.bundle_id.startswith("flood-int8-test+benign-")
    assert "anomaly.tflite" in zipfile.ZipFile(out).namelist()
    # the old key no longer vouches for it: the pair is signed by whoever paired it
    with pytest.raises(ValueError, match="untrusted"):
        load_bundle(out, [load_public_key(kit.public_key)])


@pytest.mark.tf
def test_openset_refuses_a_dataset_without_benign_steps_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("tensorflow")
    from converters.signing import generate_keypair

    kit = flood_kit(tmp_path / "flood")
    private, _, _ = generate_keypair(tmp_path / "release")
    code = iotids(
        [
            *("openset", "--bundle", str(kit.bundle), "--dataset", "synthetic"),
            *("--path", str(tmp_path / "nowhere"), "--sign-key", str(private)),
            *("--out", str(tmp_path / "x.bundle")),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("iotids openset: ")
    assert not (tmp_path / "x.bundle").exists()


@pytest.mark.parametrize("step", ["20p/1s", "100p", "0.5s"])
def test_openset_loads_the_dataset_with_the_bundles_own_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    # a packets-or-time bundle was once read as 20-second steps: its size formatted as seconds
    import training.datasets
    from agent.features.steps import StepSpec
    from agent.features.traffic import TRAFFIC_V1
    from converters.signing import generate_keypair
    from tests.agent.bundles import bundle_bytes, manifest_for

    kit = flood_kit(tmp_path / "flood")
    wanted = StepSpec.parse(step)
    bundle = tmp_path / "stepped.bundle"
    bundle.write_bytes(
        bundle_bytes(manifest_for(kit.model, TRAFFIC_V1, step=wanted), kit.model, None)
    )
    asked: list[str] = []

    def load(kind: str, path: str, **options: str) -> None:
        asked.append(options["step"])
        raise ValueError("dataset: stop here")

    monkeypatch.setattr(training.datasets, "load", load)
    private, _, _ = generate_keypair(tmp_path / "release")
    args = ["openset", "--bundle", str(bundle), "--dataset", "synthetic", "--path", str(tmp_path)]
    assert iotids([*args, "--sign-key", str(private), "--out", str(tmp_path / "x.bundle")]) == 2
    assert [StepSpec.parse(a) for a in asked] == [wanted]
