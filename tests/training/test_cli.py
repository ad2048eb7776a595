"""``iotids train`` writes the converters' whole contract; ``iotids evaluate`` reads it back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agent.cli import main
from agent.features.schema import FeatureSet

# Keras 3.15 saving calls np.array(variable) without copy=, which numpy 2.4 deprecates.
KERAS_NUMPY_COPY = (
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)
pytestmark = [pytest.mark.tf, pytest.mark.filterwarnings(KERAS_NUMPY_COPY)]

CONTRACT = (
    "model.keras",
    "preprocess.json",
    "metrics.json",
    "report.md",
    "training_curves.png",
    "confusion_matrix.png",
    "baseline.json",
    "data/representative.npz",
    "data/test.npz",
)
PREPROCESS_KEYS = {
    "feature_set", "schema_id", "columns", "step", "window", "input_shape", "model_type", "task",
    "scaler", "labels", "categories", "thresholds", "threshold_calibration", "encoders", "split",
}  # fmt: skip


@pytest.mark.slow
def test_train_nsl_kdd_dnn_writes_the_contract_and_evaluate_reads_it(
    datasets: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model"
    nsl = str(datasets / "nsl_kdd")
    code = main(
        ["train", "--dataset", "nsl-kdd", "--path", nsl, "--model", "dnn", "--out", str(out),
         "--epochs", "2", "--max-rows", "1500", "--quiet"]
    )  # fmt: skip
    assert code == 0
    for name in CONTRACT:
        assert (out / name).is_file(), name
    state = json.loads((out / "preprocess.json").read_text())
    assert set(state) >= PREPROCESS_KEYS
    assert state["schema_id"] == FeatureSet("nsl-kdd", 1, tuple(state["columns"])).schema_id
    assert state["input_shape"] == [len(state["columns"])]
    assert state["labels"][0] == "normal"
    assert state["categories"]["normal"] == "benign"
    scaler = state["scaler"]
    assert {len(scaler[k]) for k in ("min", "max", "clip_low", "clip_high")} == {
        len(state["columns"])
    }
    rep = np.load(out / "data" / "representative.npz")
    assert rep["x"].dtype == np.float32
    assert rep["x"].shape[1:] == (len(state["columns"]),)
    assert rep["x"].min() >= 0.0
    assert rep["x"].max() <= 1.0
    assert len(set(rep["y"].tolist())) >= 3  # stratified by class
    test = np.load(out / "data" / "test.npz")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["windows"]["test"] == len(test["y"])
    assert "RandomForest" in (out / "report.md").read_text()
    assert json.loads((out / "baseline.json").read_text())["model"] == "RandomForest"
    capsys.readouterr()

    assert main(["evaluate", "--model", str(out), "--path", nsl, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["labels"] == state["labels"]
    assert result["n"] > 20000  # the whole file, rows of unknown classes left out
    assert 0.0 < result["macro_f1"] <= 1.0


@pytest.mark.slow
def test_train_gru_anomaly_on_synthetic_telemetry(tmp_path: Path) -> None:
    synth = tmp_path / "synth"
    assert (
        main(["synth", "telemetry", "--out", str(synth), "--duration", "20000", "--step", "5"]) == 0
    )
    config = tmp_path / "train.toml"
    config.write_text(
        f'[train]\ndataset = "synthetic"\npath = "{synth}"\nmodel = "gru-anomaly"\n'
        f'out = "{tmp_path / "model"}"\nwindow = 4\nepochs = 1\nunits = 8\nstep = "10s"\n'
    )
    assert main(["train", "--config", str(config), "--quiet"]) == 0
    out = tmp_path / "model"
    assert (out / "export.keras").is_file()
    assert (out / "roc.png").is_file()
    state = json.loads((out / "preprocess.json").read_text())
    assert state["feature_set"] == "telemetry-v1"
    assert state["task"] == "anomaly"
    assert state["input_shape"] == [4, len(state["columns"])]
    assert set(state["thresholds"]) == {"anomaly"}
    assert state["threshold_calibration"]["target_fpr"] == 0.01
    assert state["step"] == {"kind": "time", "size": 10.0}
    import keras

    test = np.load(out / "data" / "test.npz")
    model = keras.saving.load_model(out / "model.keras")
    exported = keras.saving.load_model(out / "export.keras")
    x = test["x"][:3]
    assert x.shape[1:] == (4, len(state["columns"]))
    got = np.concatenate([exported.predict(x[i : i + 1], verbose=0) for i in range(3)])
    np.testing.assert_allclose(got, model.predict(x, verbose=0), rtol=1e-5, atol=1e-7)


def test_bad_config_exits_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "train",
            "--dataset",
            "nsl-kdd",
            "--path",
            "x",
            "--model",
            "transformer",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 2
    assert "train.model" in capsys.readouterr().err


def test_a_bad_augment_ratio_is_one_line_naming_its_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ["--dataset", "nsl-kdd", "--path", "x", "--model", "dnn", "--out", str(tmp_path)]
    assert main(["train", *flags, "--distill-augment", "-1"]) == 2
    err = capsys.readouterr().err
    assert "train.distill_augment" in err
    assert len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_train_cnn_on_synthetic_traffic_uses_the_traffic_schema(tmp_path: Path) -> None:
    from agent.features.traffic import TRAFFIC_V1

    synth = tmp_path / "synth"
    assert main(["synth", "traffic", "--out", str(synth), "--duration", "120"]) == 0
    out = tmp_path / "model"
    code = main(
        ["train", "--dataset", "synthetic", "--path", str(synth), "--model", "cnn", "--step", "1s",
         "--window", "4", "--epochs", "1", "--out", str(out), "--quiet"]
    )  # fmt: skip
    assert code == 0
    state = json.loads((out / "preprocess.json").read_text())
    assert state["feature_set"] == "traffic-v1"
    assert state["schema_id"] == TRAFFIC_V1.schema_id
    assert state["input_shape"] == [4, TRAFFIC_V1.width, 1]
    assert state["step"] == {"kind": "time", "size": 1.0}
    assert state["split"]["method"] == "blocks"  # attack bursts shorter than 5 windows
    rep = np.load(out / "data" / "representative.npz")
    assert rep["x"].shape[1:] == (4, TRAFFIC_V1.width, 1)
    assert not (out / "export.keras").exists()  # only recurrent models need the export graph
