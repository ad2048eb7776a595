"""Pack a trained model into a bundle (format in ``agent.bundle``): convert, prove, sign, write.

MODEL is a training output folder (``model.keras``, ``preprocess.json``, ``metrics.json``,
``data/representative.npz``, ``data/test.npz``, ``export.keras`` for recurrent models), a bare
``.keras`` file or a SavedModel directory plus ``--manifest M.json`` carrying the
preprocess fields, or a third-party ``.tflite`` plus ``--manifest``. Every check runs before
the first byte is written, and the bundle is written to a temporary file and renamed, so an
error never leaves a half-written bundle behind.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import agent
from agent.bundle import (
    MANIFEST,
    MODEL,
    SIGNATURE,
    Golden,
    Manifest,
    Scaler,
    TensorSpec,
    key_id,
)
from agent.bundle_metrics import score
from agent.families import family_for
from agent.features.schema import FeatureSet, lookup
from agent.features.steps import StepSpec
from agent.runtime import Model, ModelLoadError, model_opcodes, runtime_name, runtime_version
from converters.signing import load_private_key, sign

logger = logging.getLogger(__name__)

REQUIRED_KEYS = (
    "feature_set",
    "schema_id",
    "columns",
    "step",
    "window",
    "input_shape",
    "model_type",
    "task",
    "scaler",
    "labels",
)
# Carried into the manifest's ``extra`` when training wrote them: categorical encoders and how
# the data was loaded let ``evaluate --bundle`` (and a device) read new data the same way; the
# accumulator's parameters are what the agent decides with (agent/accumulate.py).
EXTRA_KEYS = ("recurrent", "encoders", "dataset", "partial_windows", "accumulator")
GOLDEN_COUNT = 4
# Golden tolerance by mode, times the output's magnitude; int8 outputs get 2 quanta instead.
GOLDEN_ATOL = {"float32": 1e-3, "float16": 1e-3, "dynamic": 5e-3, "int8": 5e-3, "external": 1e-3}


class PackError(ValueError):
    """Input the packer refuses; the message is one line naming the problem."""


@dataclass(frozen=True)
class Source:
    """What packing needs from a training folder or a bare model plus manifest."""

    model_path: Path
    export_path: Path | None
    preprocess: Mapping[str, Any]
    metrics: Mapping[str, Any]
    representative: np.ndarray | None
    test_x: np.ndarray | None
    test_y: np.ndarray | None


def _read_json(path: Path, what: str) -> dict[str, Any]:
    """A JSON object from ``path``; PackError names the file and what it was for."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PackError(f"{what}: {path} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PackError(f"{what}: {path} is not readable JSON ({exc})") from None
    if not isinstance(value, dict):
        raise PackError(f"{what}: {path} is not a JSON object")
    return value


def load_npz(path: Path, need_y: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """``x`` (float32) and optional ``y`` (int) from an .npz; PackError when malformed."""
    try:
        with np.load(path, allow_pickle=False) as data:
            x = np.asarray(data["x"], dtype=np.float32)
            y = np.asarray(data["y"]).astype(np.int64) if "y" in data else None
    except FileNotFoundError:
        raise PackError(f"data: {path} is missing") from None
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise PackError(f"data: {path} is not an .npz with an 'x' array ({exc})") from None
    if need_y and (y is None or len(y) != len(x)):
        raise PackError(f"data: {path} needs 'y' labels, one per row of 'x'")
    return x, y


def read_source(model: Path, manifest: Path | None = None) -> Source:
    """Understand MODEL: a training folder, a ``.keras`` file or a SavedModel directory."""
    if model.is_dir() and (model / "preprocess.json").exists():
        return _read_training_folder(model)
    if (model.is_dir() and (model / "saved_model.pb").exists()) or model.suffix == ".keras":
        if not model.exists():
            raise PackError(f"model: {model} does not exist")
        if manifest is None:
            raise PackError(f"model: {model} carries no preprocessing; give --manifest M.json")
        return Source(model, None, _read_json(manifest, "manifest"), {}, None, None, None)
    if model.is_dir():
        raise PackError(f"model: {model} has no preprocess.json (missing training metadata)")
    raise PackError(f"model: {model} is not a training folder, a .keras file or a SavedModel")


def _read_training_folder(folder: Path) -> Source:
    """The files ``iotids train --out`` writes (see training/train.py)."""
    model_path = folder / "model.keras"
    if not model_path.exists():
        raise PackError(f"model: {folder} has no model.keras")
    preprocess = _read_json(folder / "preprocess.json", "training metadata")
    metrics = _read_json(folder / "metrics.json", "training metrics")
    representative = None
    if (folder / "data" / "representative.npz").exists():
        representative = load_npz(folder / "data" / "representative.npz")[0]
    test_x = test_y = None
    if (folder / "data" / "test.npz").exists():
        test_x, test_y = load_npz(folder / "data" / "test.npz", need_y=True)
    export = folder / "export.keras"
    return Source(
        model_path,
        export if export.exists() else None,
        preprocess,
        metrics,
        representative,
        test_x,
        test_y,
    )


def check_preprocess(preprocess: Mapping[str, Any]) -> FeatureSet:
    """The metadata is complete and its columns hash to its schema id; returns the set."""
    missing = [k for k in REQUIRED_KEYS if k not in preprocess]
    if missing:
        raise PackError(f"training metadata: missing {', '.join(missing)}")
    name, _, version = str(preprocess["feature_set"]).rpartition("-v")
    if not name or not version.isdigit():
        raise PackError(f"training metadata: feature_set {preprocess['feature_set']!r} not NAME-vN")
    feature_set = FeatureSet(name, int(version), tuple(preprocess["columns"]))
    if feature_set.schema_id != preprocess["schema_id"]:
        raise PackError(
            f"training metadata: schema_id {preprocess['schema_id']} does not match the "
            f"columns of {feature_set.id} (they hash to {feature_set.schema_id})"
        )
    try:
        known = lookup(feature_set.id)
    except KeyError:
        return feature_set
    if known.schema_id != feature_set.schema_id:
        raise PackError(
            f"training metadata: mismatched feature set: {feature_set.id} here is "
            f"{feature_set.schema_id}, this checkout computes {known.schema_id}"
        )
    return feature_set


def _golden_inputs(source: Source, shape: tuple[int, ...]) -> np.ndarray:
    """A few scaled inputs: one per class from the test set when there is one."""
    if source.test_x is not None and source.test_y is not None and len(source.test_x):
        picks = [int(np.flatnonzero(source.test_y == c)[0]) for c in np.unique(source.test_y)]
        extra = [i for i in range(len(source.test_x)) if i not in picks]
        chosen = (picks + extra)[:GOLDEN_COUNT]
        return source.test_x[chosen].reshape((len(chosen), *shape))
    if source.representative is not None and len(source.representative):
        return source.representative[:GOLDEN_COUNT].reshape((-1, *shape))
    rng = np.random.default_rng(0)  # a bare model: any scaled input proves the runtime
    return rng.random((GOLDEN_COUNT, *shape), dtype=np.float32)


def _golden(model: Model, inputs: np.ndarray, mode: str) -> Golden:
    """Outputs measured on the real interpreter, with a tolerance suited to the mode."""
    outputs = model.predict(inputs)
    quant = model.output_quantization
    if quant is not None:
        atol = 2.0 * quant.scale
    else:
        atol = GOLDEN_ATOL[mode] * max(1.0, float(np.max(np.abs(outputs), initial=0.0)))
    return Golden(inputs.astype(np.float32), outputs, atol)


def _evaluate(model: Model, preprocess: Mapping[str, Any], x: np.ndarray, y: np.ndarray) -> Any:
    """Metrics of one TFLite model on scaled test data."""
    outputs = model.predict(x.reshape((len(x), *model.input_shape)))
    return score(
        str(preprocess["task"]), list(preprocess["labels"]), _thresholds(preprocess), outputs, y
    )


def _families(preprocess: Mapping[str, Any]) -> dict[str, str]:
    """Every label's attack family; a training folder from before families gets them by rule."""
    given = dict(preprocess.get("categories") or {})
    return {str(label): family_for(str(label), given.get(label)) for label in preprocess["labels"]}


def _thresholds(preprocess: Mapping[str, Any]) -> dict[str, float]:
    """Decision thresholds: the anomaly threshold, or per label (default 0.5)."""
    given = {str(k): float(v) for k, v in dict(preprocess.get("thresholds") or {}).items()}
    if preprocess["task"] == "anomaly":
        if "anomaly" not in given:
            raise PackError("training metadata: an anomaly model needs thresholds.anomaly")
        return given
    return {str(label): given.get(str(label), 0.5) for label in preprocess["labels"]}


def _step(value: Any) -> StepSpec:
    """The step of the training data; tabular datasets have none and get the 1 s default."""
    if value is None:
        return StepSpec()
    try:
        return StepSpec.from_dict(value)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise PackError(f"training metadata: step: {exc}") from None


def _scaler(preprocess: Mapping[str, Any]) -> Scaler:
    """The training scaler as the agent reads it, one value per column."""
    try:
        return Scaler.from_preprocess(preprocess["scaler"], len(preprocess["columns"]))
    except ValueError as exc:
        raise PackError(f"training metadata: scaler.{exc}") from None


def build_manifest(
    preprocess: Mapping[str, Any],
    model: Model,
    mode: str,
    golden: Golden,
    metrics: Mapping[str, Any],
    tools: Mapping[str, str],
    signer: str | None,
    version: int | None = None,
) -> Manifest:
    """The manifest for a converted model; shapes are taken from the model as loaded.

    ``version`` defaults to the UTC conversion time as the integer YYYYMMDDHHMMSS: later
    conversions get higher versions without anyone keeping a counter.
    """
    digest = hashlib.sha256(model.content).hexdigest()
    now = dt.datetime.now(dt.UTC)
    manifest = Manifest(
        bundle_id=f"{preprocess['model_type']}-{mode}-{digest[:12]}",
        created=now.isoformat(timespec="seconds"),
        model_type=str(preprocess["model_type"]),
        task=str(preprocess["task"]),
        feature_set=str(preprocess["feature_set"]),
        schema_id=str(preprocess["schema_id"]),
        columns=tuple(preprocess["columns"]),
        step=_step(preprocess.get("step")),
        window=int(preprocess["window"]),
        input_shape=model.input_shape,
        output_shape=model.output_shape,
        input=TensorSpec.of(model.input_dtype, model.input_quantization),
        output=TensorSpec.of(model.output_dtype, model.output_quantization),
        quantization=mode,
        scaler=_scaler(preprocess),
        labels=tuple(preprocess["labels"]),
        categories=_families(preprocess),
        thresholds=_thresholds(preprocess),
        threshold_calibration=dict(preprocess.get("threshold_calibration") or {}),
        metrics=dict(metrics),
        golden=golden,
        model_sha256=digest,
        model_size=len(model.content),
        tools=dict(tools),
        runtimes={runtime_name(): runtime_version()},
        key_id=signer,
        version=default_version(now) if version is None else version,
        extra={k: preprocess[k] for k in EXTRA_KEYS if k in preprocess},
        padding=str(preprocess.get("padding", "none")),
    )
    # Round-trip through the agent's own parser: a manifest the agent would refuse is never packed.
    try:
        return Manifest.from_json(manifest.to_json())
    except ValueError as exc:
        raise PackError(str(exc).replace("bundle manifest", "training metadata", 1)) from None


def default_version(when: dt.datetime) -> int:
    """A bundle version from a UTC time: 2026-12-04 15:03:01 -> 20261204150301."""
    return int(when.astimezone(dt.UTC).strftime("%Y%m%d%H%M%S"))


def write_bundle(out: Path, manifest_bytes: bytes, model: bytes, signature: bytes | None) -> None:
    """Write the zip atomically: a temporary file beside ``out``, fsync, then rename."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_STORED) as archive:
                archive.writestr(MANIFEST, manifest_bytes)
                archive.writestr(MODEL, model)
                if signature is not None:
                    archive.writestr(SIGNATURE, signature)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class PackResult:
    """What was written."""

    path: Path
    manifest: Manifest
    signed: bool


def _finish(
    preprocess: Mapping[str, Any],
    model: Model,
    mode: str,
    golden_inputs: np.ndarray,
    metrics: Mapping[str, Any],
    tools: Mapping[str, str],
    out: Path,
    private: Ed25519PrivateKey | None,
    version: int | None = None,
) -> PackResult:
    """Golden vectors, manifest, signature, atomic write."""
    signer = key_id(private.public_key()) if private is not None else None
    golden = _golden(model, golden_inputs, mode)
    manifest = build_manifest(preprocess, model, mode, golden, metrics, tools, signer, version)
    manifest_bytes = manifest.to_json()
    signature = sign(manifest_bytes, private) if private is not None else None
    write_bundle(out, manifest_bytes, model.content, signature)
    logger.debug("wrote %s (%d bytes, %s)", out, out.stat().st_size, manifest.bundle_id)
    return PackResult(out, manifest, signature is not None)


def pack(
    model_source: Path,
    mode: str,
    out: Path,
    *,
    sign_key: Path | None = None,
    representative: Path | None = None,
    manifest: Path | None = None,
    version: int | None = None,
) -> PackResult:
    """Convert MODEL with ``mode``, prove it on the real interpreter and write the bundle."""
    from converters.quantize import convert

    private = load_private_key(sign_key) if sign_key is not None else None
    source = read_source(model_source, manifest)
    check_preprocess(source.preprocess)
    samples = load_npz(representative)[0] if representative is not None else source.representative
    if samples is None:
        samples = source.test_x
    if samples is None:
        raise PackError("data: no representative inputs; give --representative F.npz (x: scaled)")
    shape = tuple(int(d) for d in source.preprocess["input_shape"])
    if samples.shape[1:] != shape:
        raise PackError(f"data: representative x is {samples.shape[1:]}, input_shape {shape}")
    conversion = convert(source.model_path, mode, samples, source.export_path)
    model = Model(conversion.tflite)
    if model.input_shape != shape:
        raise PackError(
            f"training metadata: input_shape {shape} but model takes {model.input_shape}"
        )
    metrics: dict[str, Any] = {"training": dict(source.metrics)}
    if source.test_x is not None and source.test_y is not None:
        float_model = Model(conversion.float_tflite)
        metrics["float"] = _evaluate(float_model, source.preprocess, source.test_x, source.test_y)
        metrics["quantized"] = _evaluate(model, source.preprocess, source.test_x, source.test_y)
    metrics["float_error"] = conversion.float_error
    tools = {
        "iotids": agent.__version__,
        "tensorflow": conversion.tensorflow_version,
        "converter": "tf.lite.TFLiteConverter",
    }
    golden_inputs = _golden_inputs(source, shape)
    return _finish(
        source.preprocess, model, mode, golden_inputs, metrics, tools, out, private, version
    )


def wrap_tflite(
    tflite: Path,
    manifest: Path,
    out: Path,
    *,
    sign_key: Path | None = None,
    version: int | None = None,
) -> PackResult:
    """Bundle a third-party ``.tflite`` with the preprocessing fields the user supplies."""
    private = load_private_key(sign_key) if sign_key is not None else None
    try:
        content = tflite.read_bytes()
    except OSError as exc:
        raise PackError(f"model: cannot read {tflite}: {exc.strerror}") from None
    try:
        custom = sorted({op.name for op in model_opcodes(content) if not op.builtin})
        if custom:
            raise PackError(f"model: {tflite} needs non-builtin ops ({', '.join(custom)})")
        model = Model(content)
    except ModelLoadError as exc:
        raise PackError(f"model: {tflite}: {exc}") from None
    preprocess = dict(_read_json(manifest, "manifest"))
    preprocess.setdefault("model_type", "external")
    preprocess.setdefault("input_shape", list(model.input_shape))
    check_preprocess(preprocess)
    mode = "int8" if model.input_quantization is not None else "external"
    metrics = {"training": dict(preprocess.get("metrics") or {})}
    tools = {"iotids": agent.__version__, "converter": "third-party .tflite"}
    rng = np.random.default_rng(0)
    golden_inputs = rng.random((GOLDEN_COUNT, *model.input_shape), dtype=np.float32)
    return _finish(preprocess, model, mode, golden_inputs, metrics, tools, out, private, version)
