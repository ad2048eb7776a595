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
from collections.abc import Mapping, Sequence
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
from agent.bundle_metrics import NO_FLOAT_ON_DATA, Predict, bundle_predict, metrics_section
from agent.bundle_metrics import classification_metrics as classification_metrics
from agent.runtime import Model, ModelLoadError, model_opcodes, runtime_name, runtime_version

# Highest operator versions tflite-runtime 2.14 registers, for the ops where TF 2.21's
# converter is known to emit newer ones (dynamic-range FULLY_CONNECTED is v12 since TF 2.15).
# Only a prediction: `probe_runtime` (and the slow test) load the model there for real.
TFLITE_RUNTIME_214_MAX = {"FULLY_CONNECTED": 11}
LATENCY_RUNS = 300
INSTALL_TRAIN = "pip install 'iotids[train]'"

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
        model.predict(x, reuse=False)
    times = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter_ns()
        model.predict(x, reuse=False)  # the interpreter's time, not a remembered answer
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
) -> dict[str, Any]:
    """The full report as a JSON-able dict; ``report["ok"]`` is False when a budget fails.

    Raises BundleError when the file is not a bundle or its manifest is unreadable.
    """
    raw = read_bundle(path)
    keys = [load_public_key(k) for k in trusted_keys]
    signature, sig_budget = _signature_section(raw, keys)
    manifest = Manifest.from_json(raw.manifest_bytes)
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
    report["metrics"] = metrics_section(manifest, model, data, floated)
    drop = report["metrics"].get("macro_f1_drop")
    if drop is not None:
        detail = f"{drop * 100:.2f} points (budget {budget_f1_drop * 100:.2f})"
        budgets.append(Budget("macro-F1 drop", drop <= budget_f1_drop, detail))
    elif data is not None:
        report["notes"] = [f"macro-F1 drop budget skipped: float model {NO_FLOAT_ON_DATA}"]
    return _close(report, budgets)


def _load_float(path: Path | None) -> Predict | None:
    """The float reference for the same data: a ``.tflite`` here, Keras only with ``[train]``.

    A ``.keras`` file or a training folder (its ``model.keras``) needs TensorFlow, which a
    gateway-only install lacks: that is a ValueError naming the install line.
    """
    if path is None:
        return None
    if path.suffix == ".tflite":
        try:
            return bundle_predict(Model(path.read_bytes()))
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
