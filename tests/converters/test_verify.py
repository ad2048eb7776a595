"""``iotids verify`` on the real interpreter: report contents, budgets and exit codes (no TF)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from agent.cli import main
from converters.bundle import wrap_tflite
from converters.signing import generate_keypair
from converters.verify import classification_metrics, verify
from tests.agent.model_fixture import REPO, need, tiny_models
from tests.converters.training_folder import preprocess

Keys = tuple[Path, Path, str]


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_models(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    return generate_keypair(tmp_path_factory.mktemp("verify-keys") / "k")


def bundle(tmp_path: Path, models: Path, name: str, key: Path | None) -> Path:
    shape = (16, 8, 1) if name.startswith("cnn") else (16, 8)
    manifest = tmp_path / f"{name}.json"
    manifest.write_text(json.dumps(preprocess("cnn", shape)))
    out = tmp_path / f"{name}.bundle"
    wrap_tflite(models / f"{name}.tflite", manifest, out, sign_key=key)
    return out


def data_file(tmp_path: Path, models: Path) -> Path:
    with np.load(models / "samples.npz") as samples:
        x, y = samples["x"][:120], samples["y"][:120]
    path = tmp_path / "data.npz"
    np.savez(path, x=x[..., None], y=y)
    return path


def test_report_on_a_good_int8_bundle(tmp_path: Path, models: Path, keys: Keys) -> None:
    path = bundle(tmp_path, models, "cnn_int8", keys[0])
    float_model = models / "cnn_float32.tflite"
    report = verify(
        path, [keys[1]], _load(data_file(tmp_path, models)), float_model, latency_runs=50
    )
    assert report["ok"], report["budgets"]
    assert report["signature"] == {"status": "ok", "key_id": keys[2]}
    assert report["model_hash"]["status"] == "ok"
    assert report["ops"]["non_builtin"] == []
    assert "CONV_2D" in report["ops"]["used"]
    assert report["golden"]["status"] == "ok"
    assert 0 < report["latency_us"]["p50"] <= report["latency_us"]["p99"]
    here, predicted = report["compatibility"]
    assert (here["runtime"], here["loads"], here["how"]) == ("ai-edge-litert", True, "tested")
    assert predicted["runtime"] == "tflite-runtime"
    assert predicted["how"].startswith("predicted")
    metrics = report["metrics"]
    assert metrics["float_source"] == "float model measured on --data"
    assert metrics["quantized"]["n"] == 120
    assert set(metrics["recall_change"]) == {"benign", "scan", "flood"}
    assert abs(metrics["macro_f1_drop"]) <= 0.01


def _load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path) as data:
        return data["x"], data["y"]


def test_budget_failure_exits_non_zero_and_names_it(
    tmp_path: Path, models: Path, keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    # an untrained GRU against the trained float CNN: the macro-F1 drop is large
    need(models, "gru_int8")
    path = bundle(tmp_path, models, "gru_int8", keys[0])
    data = data_file(tmp_path, models)
    argv = ["verify", str(path), "--trust-key", str(keys[1]), "--data", str(data)]
    argv += ["--float-model", str(models / "cnn_float32.tflite"), "--latency-runs", "20"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "FAIL macro-F1 drop" in captured.out
    assert "budget failed: macro-F1 drop" in captured.err


def test_unsigned_and_tampered_bundles_fail_their_budgets(
    tmp_path: Path, models: Path, keys: Keys
) -> None:
    unsigned = verify(bundle(tmp_path, models, "cnn_float32", None), [keys[1]], latency_runs=5)
    assert unsigned["signature"]["status"] == "unsigned"
    assert not unsigned["ok"]
    signed = bundle(tmp_path, models, "cnn_int8", keys[0])
    with zipfile.ZipFile(signed) as archive:
        entries = {n: archive.read(n) for n in archive.namelist()}
    model = bytearray(entries["model.tflite"])
    model[-10] ^= 0xFF
    entries["model.tflite"] = bytes(model)
    tampered = tmp_path / "tampered.bundle"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    tampered.write_bytes(buffer.getvalue())
    report = verify(tampered, [keys[1]], latency_runs=5)
    failed = {b["name"] for b in report["budgets"] if not b["ok"]}
    assert "model hash" in failed
    assert report["signature"]["status"] == "ok"  # the manifest itself is intact


def test_dynamic_range_prediction_for_tflite_runtime(tmp_path: Path, models: Path) -> None:
    from agent.runtime import model_opcodes

    path = bundle(tmp_path, models, "cnn_dynamic", None)
    report = verify(path, latency_runs=5)
    predicted = report["compatibility"][-1]
    versions = {
        op.name: op.version for op in model_opcodes((models / "cnn_dynamic.tflite").read_bytes())
    }
    assert predicted["loads"] == (versions["FULLY_CONNECTED"] <= 11)


def test_not_a_bundle_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "model.h5"
    junk.write_bytes(b"\x89HDF\r\n\x1a\n")
    assert main(["verify", str(junk)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "iotids verify: bundle file: not a zip archive (wrong file type?)"


def test_verify_runs_without_tensorflow(tmp_path: Path, models: Path, keys: Keys) -> None:
    path = bundle(tmp_path, models, "cnn_int8", keys[0])
    script = (
        "import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"
        "from agent.cli import main\n"
        f"sys.exit(main(['verify', {str(path)!r}, '--trust-key', {str(keys[1])!r},"
        " '--json', '--latency-runs', '20']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"]
    assert report["signature"]["key_id"] == keys[2]


def test_classification_metrics_by_hand() -> None:
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 0])
    metrics = classification_metrics(y_true, y_pred, ["a", "b", "c"])
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["per_class"]["a"]["recall"] == pytest.approx(0.5)
    assert metrics["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    f1 = [0.5, 0.8, 2 / 3]
    assert metrics["macro_f1"] == pytest.approx(sum(f1) / 3)


def test_verify_runs_without_training(tmp_path: Path, models: Path, keys: Keys) -> None:
    """A gateway install has neither TensorFlow nor the training package: verify needs neither."""
    path = bundle(tmp_path, models, "cnn_int8", keys[0])
    data = data_file(tmp_path, models)
    script = (
        "import sys\n"
        "for name in ('tensorflow', 'keras', 'training'): sys.modules[name] = None\n"
        "from agent.cli import main\n"
        f"code = main(['verify', {str(path)!r}, '--trust-key', {str(keys[1])!r}, '--data',"
        f" {str(data)!r}, '--float-model', {str(models / 'cnn_float32.tflite')!r},"
        " '--json', '--latency-runs', '20'])\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] == 'training' and sys.modules[m]]\n"
        "print('LOADED=' + ','.join(loaded), file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "LOADED="
    report = json.loads(done.stdout)
    assert report["metrics"]["quantized_source"] == "measured on --data"
    assert report["metrics"]["float_source"] == "float model measured on --data"


def test_verify_dataset_points_at_evaluate_bundle(
    tmp_path: Path, models: Path, keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    path = bundle(tmp_path, models, "cnn_int8", keys[0])
    argv = ["verify", str(path), "--dataset", "synthetic", "--path", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "iotids evaluate --bundle BUNDLE --dataset KIND --path PATH" in err
