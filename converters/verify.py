"""Prove a bundle on the interpreter a gateway uses, and say whether it is fit to ship.

No TensorFlow needed: ``iotids verify`` runs on a gateway-only install (only a Keras
``--float-model`` needs the ``[train]`` extra). The report covers the signature and model hash,
operators (and any non-builtin ones), size, golden-vector agreement, latency per window on this
CPU, which runtimes can load the model, and — with data — float vs quantized metrics side by
side, both measured on that data (with no float model to run on it, the quantized side only:
the manifest's float figures come from another test set). Budgets (macro-F1 drop, no
non-builtin ops, golden vectors, a valid signature) decide the exit code.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.bundle import (
    BundleError,
    Manifest,
    RawBundle,
    check_golden,
    check_model_hash,
    check_signature,
    load_model,
    load_public_key,
    read_bundle,
)
from agent.runtime import Model, ModelLoadError, model_opcodes, runtime_name, runtime_version

# Highest operator versions tflite-runtime 2.14 registers, for the ops where TF 2.21's
# converter is known to emit newer ones (dynamic-range FULLY_CONNECTED is v12 since TF 2.15).
# Only a prediction: `probe_runtime` (and the slow test) load the model there for real.
TFLITE_RUNTIME_214_MAX = {"FULLY_CONNECTED": 11}
LATENCY_RUNS = 300
INSTALL_TRAIN = "pip install 'iotids[train]'"
NO_FLOAT_ON_DATA = (
    "not run on --data: give --float-model MODEL.tflite, MODEL.keras or the training folder"
)
# Scaled inputs (N, ...) -> model outputs (N, ...): the float reference run on verify's data.
Predict = Callable[[np.ndarray], np.ndarray]

_PROBE = """
import json, sys
import numpy as np
try:
    from ai_edge_litert.interpreter import Interpreter
    import ai_edge_litert as rt
    name = "ai-edge-litert"
except ImportError:
    from tflite_runtime.interpreter import Interpreter
    import tflite_runtime as rt
    name = "tflite-runtime"
result = {"runtime": name, "version": getattr(rt, "__version__", "?")}
try:
    it = Interpreter(model_path=sys.argv[1])
    it.allocate_tensors()
    d = it.get_input_details()[0]
    it.set_tensor(d["index"], np.zeros(d["shape"], dtype=d["dtype"]))
    it.invoke()
    result["loads"] = True
except Exception as exc:
    result["loads"] = False
    result["error"] = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
print(json.dumps(result))
"""


# --- metrics (numpy only; the gateway install has no scikit-learn) -----------------------------


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, macro-F1 over the classes present, and per-class precision / recall / F1."""
    per_class: dict[str, dict[str, float]] = {}
    f1s = []
    for index in sorted(set(np.unique(y_true)) | set(np.unique(y_pred))):
        tp = int(np.sum((y_true == index) & (y_pred == index)))
        fp = int(np.sum((y_true != index) & (y_pred == index)))
        fn = int(np.sum((y_true == index) & (y_pred != index)))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        name = labels[int(index)] if 0 <= int(index) < len(labels) else str(int(index))
        per_class[name] = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": int(np.sum(y_true == index)),
        }
        f1s.append(f1)
    return {
        "accuracy": float(np.mean(y_true == y_pred)) if len(y_true) else 0.0,
        "macro_f1": float(np.mean(f1s)) if f1s else 0.0,
        "per_class": per_class,
        "n": len(y_true),
    }


def score(
    task: str,
    labels: Sequence[str],
    thresholds: Mapping[str, float],
    outputs: np.ndarray,
    y: np.ndarray,
) -> dict[str, Any]:
    """Metrics of model outputs: argmax for classifiers, score > threshold for anomaly models."""
    if task == "anomaly":
        flagged = (outputs.reshape(len(outputs)) > thresholds["anomaly"]).astype(np.int64)
        result = classification_metrics((y != 0).astype(np.int64), flagged, ["normal", "anomaly"])
        anomaly = result["per_class"].get("anomaly", {"precision": 0.0, "recall": 0.0})
        result["precision"] = anomaly["precision"]
        result["recall"] = anomaly["recall"]
        result["threshold"] = thresholds["anomaly"]
        return result
    predicted = np.argmax(outputs.reshape(len(outputs), -1), axis=1)
    return classification_metrics(y, predicted, labels)


# --- checks -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """One pass/fail line of the report."""

    name: str
    ok: bool
    detail: str


def latency_us(model: Model, sample: np.ndarray, runs: int = LATENCY_RUNS) -> dict[str, float]:
    """p50 / p99 microseconds per single-window invocation on this CPU."""
    x = sample.reshape((1, *model.input_shape)).astype(np.float32)
    for _ in range(10):
        model.predict(x)
    times = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter_ns()
        model.predict(x)
        times[i] = (time.perf_counter_ns() - start) / 1000.0
    return {
        "p50": float(np.percentile(times, 50)),
        "p99": float(np.percentile(times, 99)),
        "runs": runs,
    }


def probe_runtime(python: str, model_content: bytes, timeout: float = 120.0) -> dict[str, Any]:
    """Load and invoke the model under another interpreter (e.g. a tflite-runtime venv)."""
    with tempfile.NamedTemporaryFile(suffix=".tflite") as handle:
        handle.write(model_content)
        handle.flush()
        done = subprocess.run(
            [python, "-c", _PROBE, handle.name],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"runtime": python, "loads": False, "error": f"probe failed: {tail}"}
    result: dict[str, Any] = json.loads(lines[-1])
    result["how"] = "tested"
    return result


def compatibility(
    model_content: bytes, here: dict[str, Any], pythons: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Which runtimes load the model: this one (tested), others probed or predicted."""
    rows = [here, *(probe_runtime(p, model_content) for p in pythons)]
    if not any(r.get("runtime") == "tflite-runtime" for r in rows):
        too_new = [
            f"{op.name} v{op.version} > v{TFLITE_RUNTIME_214_MAX[op.name]}"
            for op in model_opcodes(model_content)
            if op.version > TFLITE_RUNTIME_214_MAX.get(op.name, op.version)
        ]
        rows.append(
            {
                "runtime": "tflite-runtime",
                "version": "2.14",
                "loads": not too_new,
                "how": "predicted (untested here): needs numpy<2",
                "error": "; ".join(too_new),
            }
        )
    return rows


def _metrics_section(
    manifest: Manifest,
    model: Model,
    data: tuple[np.ndarray, np.ndarray] | None,
    float_model: Predict | None,
) -> dict[str, Any]:
    """Float vs quantized metrics on one set of rows, and the per-class recall change.

    With data and no float model, only the quantized side is measured: the manifest's float
    figures come from the converter's test set, and comparing them with new data would charge
    the quantizer for a change of data.
    """
    metrics = dict(manifest.metrics)
    quantized: Any
    if data is not None:
        x, y = data

        def run(predict: Predict) -> dict[str, Any]:
            return score(manifest.task, manifest.labels, manifest.thresholds, predict(x), y)

        quantized, quant_source = run(_bundle_predict(model)), "measured on --data"
        if float_model is not None:
            floated, float_source = run(float_model), "float model measured on --data"
        else:
            floated, float_source = None, NO_FLOAT_ON_DATA
    else:
        quantized, quant_source = metrics.get("quantized"), "manifest (converter's test set)"
        floated, float_source = _manifest_float(metrics)
    section: dict[str, Any] = {
        "float": floated,
        "float_source": float_source,
        "quantized": quantized,
        "quantized_source": quant_source,
    }
    if isinstance(floated, dict) and isinstance(quantized, dict) and "macro_f1" in floated:
        section["macro_f1_drop"] = float(floated["macro_f1"]) - float(quantized["macro_f1"])
        section["recall_change"] = {
            name: values["recall"] - floated["per_class"][name]["recall"]
            for name, values in quantized.get("per_class", {}).items()
            if name in floated.get("per_class", {}) and "recall" in floated["per_class"][name]
        }
    return section


def _bundle_predict(model: Model) -> Predict:
    """The bundle's model over a batch of scaled inputs in any compatible shape."""
    return lambda x: model.predict(x.reshape((len(x), *model.input_shape)))


def _manifest_float(metrics: Mapping[str, Any]) -> tuple[Any, str]:
    """The float reference the converter recorded, else training's own metrics."""
    if isinstance(metrics.get("float"), dict):
        return metrics["float"], "manifest (float TFLite on the converter's test set)"
    if isinstance(metrics.get("training"), dict) and "macro_f1" in metrics["training"]:
        return metrics["training"], "manifest (training metrics)"
    return None, "none"


def _signature_section(raw: RawBundle, trusted: Sequence[Any]) -> tuple[dict[str, Any], Budget]:
    """Signature status; with no trusted keys given, only whether a signature is there."""
    if raw.signature is None:
        why = "unsigned: agents refuse it (pack with --sign-key)"
        return {"status": "unsigned"}, Budget("signature", False, why)
    if not trusted:
        claimed = json.loads(raw.manifest_bytes).get("key_id")
        detail = f"signed by {claimed}, not checked (no --trust-key)"
        return {"status": "not checked", "key_id": claimed}, Budget("signature", True, detail)
    try:
        signer = check_signature(raw, trusted)
    except BundleError as exc:
        return {"status": "refused", "error": str(exc)}, Budget("signature", False, str(exc))
    return {"status": "ok", "key_id": signer}, Budget("signature", True, f"signed by {signer}")


def verify(
    path: Path,
    trusted_keys: Sequence[Path] = (),
    data: tuple[np.ndarray, np.ndarray] | None = None,
    float_model: Path | None = None,
    budget_f1_drop: float = 0.01,
    runtime_pythons: Sequence[str] = (),
    latency_runs: int = LATENCY_RUNS,
    dataset: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """The full report as a JSON-able dict; ``report["ok"]`` is False when a budget fails.

    Raises BundleError when the file is not a bundle or its manifest is unreadable.
    """
    raw = read_bundle(path)
    keys = [load_public_key(k) for k in trusted_keys]
    signature, sig_budget = _signature_section(raw, keys)
    manifest = Manifest.from_json(raw.manifest_bytes)
    if dataset is not None:
        data = dataset_arrays(dataset[0], dataset[1], manifest)
    budgets = [sig_budget]
    report: dict[str, Any] = {
        "bundle": str(path),
        "bundle_id": manifest.bundle_id,
        "version": manifest.version,
        "file_size": path.stat().st_size,
        "model_size": len(raw.model_content),
        "model_type": manifest.model_type,
        "quantization": manifest.quantization,
        "signature": signature,
    }
    try:
        check_model_hash(manifest, raw.model_content)
        report["model_hash"] = {"status": "ok", "sha256": manifest.model_sha256}
        budgets.append(Budget("model hash", True, "sha256 matches the manifest"))
    except BundleError as exc:
        report["model_hash"] = {"status": "mismatch", "error": str(exc)}
        budgets.append(Budget("model hash", False, str(exc)))
    opcodes = model_opcodes(raw.model_content)
    non_builtin = sorted({op.name for op in opcodes if not op.builtin})
    report["ops"] = {
        "used": sorted({op.name for op in opcodes}),
        "versions": {op.name: op.version for op in opcodes},
        "non_builtin": non_builtin,
    }
    budgets.append(
        Budget("builtin ops", not non_builtin, ", ".join(non_builtin) or "builtin ops only")
    )
    here: dict[str, Any] = {
        "runtime": runtime_name(),
        "version": runtime_version(),
        "how": "tested",
    }
    try:
        model = load_model(manifest, raw.model_content)
    except BundleError as exc:
        here |= {"loads": False, "error": str(exc)}
        report["compatibility"] = compatibility(raw.model_content, here, runtime_pythons)
        budgets.append(Budget("runtime", False, str(exc)))
        return _close(report, budgets)
    here["loads"] = True
    report["compatibility"] = compatibility(raw.model_content, here, runtime_pythons)
    try:
        error = check_golden(manifest, model)
        report["golden"] = {"status": "ok", "max_error": error, "atol": manifest.golden.atol}
        budgets.append(Budget("golden vectors", True, f"max error {error:.3g}"))
    except BundleError as exc:
        report["golden"] = {"status": "failed", "error": str(exc), "atol": manifest.golden.atol}
        budgets.append(Budget("golden vectors", False, str(exc)))
    report["latency_us"] = latency_us(model, manifest.golden.inputs[0], latency_runs)
    floated = _load_float(float_model)
    report["metrics"] = _metrics_section(manifest, model, data, floated)
    drop = report["metrics"].get("macro_f1_drop")
    if drop is not None:
        detail = f"{drop * 100:.2f} points (budget {budget_f1_drop * 100:.2f})"
        budgets.append(Budget("macro-F1 drop", drop <= budget_f1_drop, detail))
    elif data is not None:
        report["notes"] = [f"macro-F1 drop budget skipped: float model {NO_FLOAT_ON_DATA}"]
    return _close(report, budgets)


def dataset_arrays(kind: str, path: str, manifest: Manifest) -> tuple[np.ndarray, np.ndarray]:
    """Scaled model inputs and labels read by training's loaders the way training read them.

    Needs the ``[train]`` extra (training's loaders); rows of classes the model does not know
    are left out, windows are labelled by their last step as in training.
    """
    try:
        from training import split
        from training.scoring import load_like, targets
    except ImportError:
        raise ValueError(f"--dataset needs training's loaders; install: {INSTALL_TRAIN}") from None
    state = {
        "dataset": dict(manifest.extra.get("dataset") or {"kind": kind, "options": {}}),
        "encoders": manifest.extra.get("encoders", {}),
        "columns": list(manifest.columns),
        "schema_id": manifest.schema_id,
        "feature_set": manifest.feature_set,
        "labels": list(manifest.labels),
        "task": manifest.task,
    }
    dataset = load_like(state, kind, path)
    y_all, _ = targets(dataset, state)
    scaled = manifest.scaler.transform(dataset.x)
    if dataset.sequential and dataset.groups is not None:
        ranges = split.runs(dataset.groups, np.zeros(len(y_all), np.str_))
        padded = split.stream_starts(dataset.groups) if manifest.padding == "zeros" else None
        fill = manifest.scaler.transform(np.zeros((1, len(manifest.columns)), np.float32))[0]
        windows, y, _ = split.windows(
            scaled, y_all, ranges, manifest.window, padded or frozenset(), fill
        )
    else:
        windows, y = scaled[:, None, :], y_all
    known = y >= 0
    x = windows[known]
    if int(np.prod(manifest.input_shape)) == len(manifest.columns):
        x = x[:, -1, :]  # a one-step model reads the window's last step
    return x.reshape((len(x), *manifest.input_shape)), y[known]


def _load_float(path: Path | None) -> Predict | None:
    """The float reference for the same data: a ``.tflite`` here, Keras only with ``[train]``.

    A ``.keras`` file or a training folder (its ``model.keras``) needs TensorFlow, which a
    gateway-only install lacks: that is a ValueError naming the install line.
    """
    if path is None:
        return None
    if path.suffix == ".tflite":
        try:
            return _bundle_predict(Model(path.read_bytes()))
        except (OSError, ModelLoadError) as exc:
            raise BundleError(f"float model {path}: {exc}") from None
    keras_path = path / "model.keras" if path.is_dir() else path
    if keras_path.suffix != ".keras" or not keras_path.is_file():
        raise ValueError(f"--float-model {path}: expected a .tflite, a .keras or a training folder")
    try:
        from agent.quiet import quiet_tensorflow

        quiet_tensorflow()
        import keras
    except ImportError:
        raise ValueError(
            f"--float-model {path}: a Keras model needs TensorFlow; install: {INSTALL_TRAIN}"
        ) from None
    float_model = keras.models.load_model(keras_path, compile=False)
    shape = tuple(int(d) for d in float_model.input_shape[1:])

    def predict(x: np.ndarray) -> np.ndarray:
        batch = x.reshape((len(x), *shape)).astype(np.float32)
        return np.asarray(float_model.predict(batch, batch_size=256, verbose=0))

    return predict


def _close(report: dict[str, Any], budgets: list[Budget]) -> dict[str, Any]:
    report["budgets"] = [{"name": b.name, "ok": b.ok, "detail": b.detail} for b in budgets]
    report["ok"] = all(b.ok for b in budgets)
    return report


def render(report: Mapping[str, Any]) -> str:
    """The report as a few human-readable lines."""
    lines = [
        f"bundle {report['bundle_id']}: {report['model_type']} {report['quantization']}, "
        f"file {report['file_size']} B, model {report['model_size']} B",
        f"ops: {', '.join(report['ops']['used'])}",
    ]
    if "latency_us" in report:
        lat = report["latency_us"]
        lines.append(f"latency per window: p50 {lat['p50']:.1f} us, p99 {lat['p99']:.1f} us")
    for row in report.get("compatibility", []):
        verdict = "loads" if row.get("loads") else f"does not load ({row.get('error', '')})"
        lines.append(f"runtime {row['runtime']} {row.get('version', '')}: {verdict} [{row['how']}]")
    metrics = report.get("metrics", {})
    if isinstance(metrics.get("float"), dict) and isinstance(metrics.get("quantized"), dict):
        lines.append(
            f"macro-F1 float {metrics['float']['macro_f1']:.4f} ({metrics['float_source']}) vs "
            f"quantized {metrics['quantized']['macro_f1']:.4f} ({metrics['quantized_source']})"
        )
        for name, change in sorted(metrics.get("recall_change", {}).items()):
            lines.append(f"  recall {name}: {change * 100:+.2f} points")
    elif isinstance(metrics.get("quantized"), dict) and "macro_f1" in metrics["quantized"]:
        quantized = metrics["quantized"]
        lines.append(
            f"macro-F1 quantized {quantized['macro_f1']:.4f} ({metrics['quantized_source']})"
        )
        for name, values in sorted(quantized.get("per_class", {}).items()):
            lines.append(f"  recall {name}: {values['recall'] * 100:.2f} %")
    for budget in report["budgets"]:
        lines.append(f"{'PASS' if budget['ok'] else 'FAIL'} {budget['name']}: {budget['detail']}")
    lines.extend(f"NOTE {note}" for note in report.get("notes", []))
    return "\n".join(lines)
