"""``iotids convert``: real Keras -> TFLite conversions packed into bundles the agent accepts."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from agent.bundle import load_bundle
from agent.cli import main
from agent.features.schema import FeatureSet
from converters.bundle import PackError, pack
from converters.quantize import ConversionError, to_tflite
from tests.converters.training_folder import FEATURES

pytestmark = [pytest.mark.tf, pytest.mark.slow]


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_int8_cnn_bundle_is_small_signed_and_accurate(
    folders: dict[str, Path], signer: tuple[Path, Path, str], tmp_path: Path
) -> None:
    private, public, ident = signer
    out = tmp_path / "cnn.bundle"
    result = pack(folders["cnn"], "int8", out, sign_key=private)
    assert result.signed
    assert _leftovers(tmp_path) == ["cnn.bundle"]
    bundle = load_bundle(out, [public.read_bytes()])
    manifest = bundle.manifest
    assert bundle.signer == ident
    assert manifest.quantization == "int8"
    assert manifest.input.dtype == manifest.output.dtype == "int8"
    assert manifest.input_shape == (16, 8, 1)
    assert manifest.tools["tensorflow"].startswith("2.")
    assert manifest.runtimes == {"ai-edge-litert": manifest.runtimes["ai-edge-litert"]}
    # a training folder from before families ("recon", "dos") gets them by the built-in rules
    assert manifest.categories == {"benign": "benign", "scan": "scan", "flood": "flood"}
    assert len(manifest.golden.inputs) == 4
    assert out.stat().st_size < 100_000
    metrics = manifest.metrics
    assert metrics["float_error"] < 1e-3
    assert metrics["float"]["n"] == metrics["quantized"]["n"] == 150
    assert set(metrics["quantized"]["per_class"]) == {"benign", "scan", "flood"}
    assert metrics["float"]["macro_f1"] - metrics["quantized"]["macro_f1"] < 0.05
    # the agent's own check: it scores the packed test windows like the converter did
    with np.load(folders["cnn"] / "data" / "test.npz") as data:
        predicted = bundle.model.predict(data["x"]).argmax(axis=1)
        accuracy = float(np.mean(predicted == data["y"]))
    assert accuracy == pytest.approx(metrics["quantized"]["accuracy"])


def test_recurrent_model_goes_through_the_unrolled_graph(
    folders: dict[str, Path], signer: tuple[Path, Path, str], tmp_path: Path
) -> None:
    assert not (folders["gru"] / "export.keras").exists()
    out = tmp_path / "gru.bundle"
    pack(folders["gru"], "int8", out, sign_key=signer[0])
    bundle = load_bundle(out, [signer[1].read_bytes()])
    assert bundle.manifest.input_shape == (16, 8)
    assert bundle.manifest.metrics["float_error"] < 1e-3
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" not in bundle.model.ops_used()
    with np.load(folders["gru"] / "data" / "test.npz") as data:
        assert bundle.model.predict(data["x"][:3]).shape == (3, 3)


def test_anomaly_model_scores_against_its_threshold(
    folders: dict[str, Path], signer: tuple[Path, Path, str], tmp_path: Path
) -> None:
    out = tmp_path / "anomaly.bundle"
    pack(folders["gru-anomaly"], "int8", out, sign_key=signer[0])
    manifest = load_bundle(out, [signer[1].read_bytes()]).manifest
    assert manifest.task == "anomaly"
    assert manifest.categories == {"normal": "benign", "anomaly": "unknown"}
    assert manifest.output_shape == (1,)
    assert set(manifest.thresholds) == {"anomaly"}
    assert manifest.threshold_calibration["method"] == "percentile"
    quantized = manifest.metrics["quantized"]
    assert quantized["threshold"] == manifest.thresholds["anomaly"]
    assert 0.0 <= quantized["precision"] <= 1.0
    assert 0.0 <= quantized["recall"] <= 1.0
    assert set(quantized["per_class"]) <= {"normal", "anomaly"}


def test_dynamic_batch_recurrent_graph_is_refused_with_op_names(folders: dict[str, Path]) -> None:
    from converters.quantize import load_keras

    model = load_keras(folders["gru"] / "model.keras")
    with pytest.raises(ConversionError, match=r"TensorListReserve.*unroll=True"):
        to_tflite(model, "float32")


def test_dynamic_range_uses_newer_fully_connected(
    folders: dict[str, Path], signer: tuple[Path, Path, str], tmp_path: Path
) -> None:
    out = tmp_path / "dnn.bundle"
    pack(folders["dnn"], "dynamic", out, sign_key=signer[0])
    bundle = load_bundle(out, [signer[1].read_bytes()])
    from agent.runtime import model_opcodes

    versions = {op.name: op.version for op in model_opcodes(bundle.model.content)}
    assert versions["FULLY_CONNECTED"] >= 12
    assert bundle.manifest.input_shape == (8,)


def test_cli_unsigned_bundle_warns(
    folders: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "plain.bundle"
    code = main(["convert", str(folders["cnn"]), "--quantize", "float16", "--out", str(out)])
    assert code == 0
    captured = capsys.readouterr()
    assert "UNSIGNED" in captured.err
    assert "wrote" in captured.out
    assert out.exists()


def _broken_folder(folders: dict[str, Path], tmp_path: Path, change: dict[str, object]) -> Path:
    folder = tmp_path / "broken"
    shutil.copytree(folders["cnn"], folder)
    meta = json.loads((folder / "preprocess.json").read_text())
    meta.update(change)
    (folder / "preprocess.json").write_text(json.dumps(meta))
    return folder


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("text file", "is not a training folder, a .keras file or a SavedModel"),
        ("no metadata", "missing training metadata"),
        ("bare keras", "give --manifest"),
        ("schema", "schema_id 0000000000000000 does not match"),
        ("missing key", "training metadata: missing scaler"),
        ("registered set", "mismatched feature set: traffic-v1 here is"),
        ("bad representative", "representative x is (4,)"),
        ("bad key", "not an unencrypted PEM private key"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    case: str, message: str, folders: dict[str, Path], tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    args: dict[str, Path] = {}
    model = folders["cnn"]
    if case == "text file":
        model = work / "notes.txt"
        model.write_text("hello")
    elif case == "no metadata":
        model = work / "empty"
        model.mkdir()
    elif case == "bare keras":
        model = folders["cnn"] / "model.keras"
    elif case == "schema":
        model = _broken_folder(folders, work, {"schema_id": "0" * 16})
    elif case == "registered set":  # the real traffic-v1 has other columns
        fake = FeatureSet("traffic", 1, FEATURES.columns)
        model = _broken_folder(folders, work, {"feature_set": fake.id, "schema_id": fake.schema_id})
    elif case == "missing key":
        model = _broken_folder(folders, work, {})
        meta = json.loads((model / "preprocess.json").read_text())
        del meta["scaler"]
        (model / "preprocess.json").write_text(json.dumps(meta))
    elif case == "bad representative":
        args["representative"] = work / "rep.npz"
        np.savez(args["representative"], x=np.zeros((10, 4), np.float32))
    elif case == "bad key":
        args["sign_key"] = work / "key.pem"
        args["sign_key"].write_text("not a key")
    with pytest.raises((PackError, ValueError), match=re.escape(message)) as info:
        pack(model, "int8", out_dir / "b.bundle", **args)
    assert "\n" not in str(info.value)
    assert _leftovers(out_dir) == []


def test_cli_wraps_a_third_party_tflite(
    folders: dict[str, Path], signer: tuple[Path, Path, str], tmp_path: Path
) -> None:
    from converters.quantize import convert

    with np.load(folders["cnn"] / "data" / "representative.npz") as data:
        content = convert(folders["cnn"] / "model.keras", "int8", data["x"]).tflite
    tflite = tmp_path / "vendor.tflite"
    tflite.write_bytes(content)
    manifest = tmp_path / "vendor.json"
    meta = json.loads((folders["cnn"] / "preprocess.json").read_text())
    meta["model_type"] = "external"
    manifest.write_text(json.dumps(meta))
    out = tmp_path / "vendor.bundle"
    argv = ["convert", "--tflite", str(tflite), "--manifest", str(manifest), "--out", str(out)]
    assert main([*argv, "--sign-key", str(signer[0])]) == 0
    bundle = load_bundle(out, [signer[1].read_bytes()])
    assert bundle.manifest.model_type == "external"
    assert bundle.manifest.quantization == "int8"
    assert bundle.model.content == content


def test_bare_keras_and_saved_model_need_only_a_manifest(
    folders: dict[str, Path], signer: tuple[Path, Path, str], tmp_path: Path
) -> None:
    from converters.quantize import keras_numpy_quiet, load_keras

    folder = folders["cnn"]
    saved_model = tmp_path / "saved_model"
    with keras_numpy_quiet():
        load_keras(folder / "model.keras").export(saved_model, verbose=False)
    rep = folder / "data" / "representative.npz"
    meta = folder / "preprocess.json"
    for source in (folder / "model.keras", saved_model):
        out = tmp_path / f"{source.name}.bundle"
        pack(source, "int8", out, sign_key=signer[0], representative=rep, manifest=meta)
        manifest = load_bundle(out, [signer[1].read_bytes()]).manifest
        assert manifest.input_shape == (16, 8, 1)
        assert manifest.metrics["float_error"] < 1e-3
        assert "quantized" not in manifest.metrics  # no test set given: none claimed
