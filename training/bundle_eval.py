"""``iotids evaluate --bundle``: a signed bundle's int8 model scored on a raw dataset.

Reading a dataset needs training's loaders (and its preprocessing state, carried in the
manifest), so this lives in training; ``iotids verify`` on a gateway scores only prepared
``--data`` arrays. The figures are computed like verify's (``agent.bundle_metrics``), so the
two reports compare line by line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.bundle import Manifest, load_bundle, load_public_key
from agent.bundle_metrics import Predict, bundle_predict, metrics_section
from agent.runtime import Model
from training import split
from training.scoring import load_like, targets


def evaluate_bundle(
    bundle: Path,
    trusted_keys: Sequence[Path],
    kind: str,
    path: str,
    float_model: Path | None = None,
) -> dict[str, Any]:
    """The bundle's metrics on ``path`` read as dataset ``kind``; float beside it when given.

    Raises BundleError when the bundle does not verify against ``trusted_keys``, ValueError or
    FileNotFoundError when the data does not fit it.
    """
    loaded = load_bundle(bundle, [load_public_key(k) for k in trusted_keys])
    manifest = loaded.manifest
    data = dataset_arrays(kind, path, manifest)
    metrics = metrics_section(
        manifest, loaded.model, data, _load_float(float_model), where="--dataset"
    )
    return {
        "bundle": str(bundle),
        "bundle_id": manifest.bundle_id,
        "signer": loaded.signer,
        "dataset": kind,
        "path": path,
        "metrics": metrics,
    }


def dataset_arrays(
    kind: str, path: str, manifest: Manifest
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Scaled model inputs and labels read by training's loaders the way training read them.

    Rows of classes the model does not know are left out; windows are labelled by their last
    step as in training.
    """
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
    """The float reference: a ``.tflite`` file, a ``.keras`` file or a training folder."""
    if path is None:
        return None
    if path.suffix == ".tflite":
        return bundle_predict(Model(path.read_bytes()))
    keras_path = path / "model.keras" if path.is_dir() else path
    if keras_path.suffix != ".keras" or not keras_path.is_file():
        raise ValueError(f"--float-model {path}: expected a .tflite, a .keras or a training folder")
    from agent.quiet import quiet_tensorflow

    quiet_tensorflow()
    import keras

    float_model = keras.models.load_model(keras_path, compile=False)
    shape = tuple(int(d) for d in float_model.input_shape[1:])

    def predict(x: npt.NDArray[Any]) -> npt.NDArray[Any]:
        batch = x.reshape((len(x), *shape)).astype(np.float32)
        return np.asarray(float_model.predict(batch, batch_size=256, verbose=0))

    return predict
