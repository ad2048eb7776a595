"""Keras / SavedModel -> TFLite as float32, float16, dynamic-range or full-integer int8.

Recurrent models (LSTM/GRU) are converted through a graph with a fixed batch of 1 and
``unroll=True``: measured with TF 2.21 / Keras 3.15, a dynamic batch leaves TensorList ops
the builtin set lacks, and a fixed batch without unrolling crashes the int8 converter. Before
quantizing, the float TFLite model must agree with Keras, so a bad export is caught here and
not on a gateway. Only builtin ops are allowed (no Flex / SELECT_TF_OPS): a model that needs
others is refused with the op names and the fix.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import warnings
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.quiet import quiet_tensorflow
from agent.runtime import Model, model_opcodes

logger = logging.getLogger(__name__)

MODES = ("float32", "float16", "dynamic", "int8")
RECURRENT_LAYERS = frozenset({"LSTM", "GRU", "SimpleRNN"})
AGREEMENT_SAMPLES = 32
AGREEMENT_RTOL = 1e-3  # of the output's magnitude (softmax probabilities or anomaly scores)
REPRESENTATIVE_LIMIT = 500
FIX_HINT = (
    "fix: export recurrent layers with a fixed batch of 1 and unroll=True, "
    "or replace the layer with one the builtin TFLite set covers"
)


class ConversionError(ValueError):
    """A model that cannot become a builtin-only TFLite model; one line says why."""


@dataclass(frozen=True)
class Conversion:
    """The converted model, its float reference, and how closely that matched Keras."""

    tflite: bytes
    float_tflite: bytes
    mode: str
    float_error: float
    tensorflow_version: str


# Keras 3.15 on numpy 2 warns on every variable it reads back; noise, not a user problem.
NUMPY_COPY_WARNING = r"__array__ implementation doesn't accept a copy keyword"


@contextlib.contextmanager
def keras_numpy_quiet() -> Iterator[None]:
    """Ignore Keras's numpy-2 ``copy`` DeprecationWarning inside TF calls."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", NUMPY_COPY_WARNING, DeprecationWarning)
        yield


# TF's int8 path always says this when inputs are int8; the calibration supplies the stats.
INT8_STATS_WARNING = "Statistics for quantized inputs were expected"


@contextlib.contextmanager
def quiet_conversion() -> Iterator[None]:
    """Swallow what the MLIR converter and Keras export print on fds 1 and 2."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    with (
        tempfile.TemporaryFile() as sink,
        keras_numpy_quiet(),
        contextlib.redirect_stdout(sys.stderr),
        warnings.catch_warnings(),
    ):
        warnings.filterwarnings("ignore", INT8_STATS_WARNING, UserWarning)
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def load_keras(path: Path) -> Any:
    """A Keras 3 model from ``.keras``.

    Training builds its models from Keras' own layers only (no custom objects), so any
    ``.keras`` file it writes loads here without importing training.
    """
    quiet_tensorflow()
    import keras

    try:
        with keras_numpy_quiet():
            return keras.saving.load_model(path, compile=False)
    except (ValueError, OSError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConversionError(f"model {path}: cannot load as Keras ({first})") from None


def is_recurrent(model: Any) -> bool:
    """Whether the model's config holds an LSTM / GRU / SimpleRNN layer anywhere."""
    return _walk_find(model.get_config())


def _walk_find(node: Any) -> bool:
    if isinstance(node, dict):
        if node.get("class_name") in RECURRENT_LAYERS:
            return True
        return any(_walk_find(v) for v in node.values())
    if isinstance(node, list):
        return any(_walk_find(v) for v in node)
    return False


def _patch_for_export(node: Any) -> None:
    """In place: unroll recurrent layers and fix every input's batch to 1."""
    if isinstance(node, dict):
        config = node.get("config")
        if isinstance(config, dict):
            if node.get("class_name") in RECURRENT_LAYERS:
                config["unroll"] = True
            if node.get("class_name") == "InputLayer" and config.get("batch_shape"):
                config["batch_shape"] = [1, *list(config["batch_shape"])[1:]]
        if isinstance(node.get("build_input_shape"), list | tuple):
            node["build_input_shape"] = [1, *list(node["build_input_shape"])[1:]]
        for value in node.values():
            _patch_for_export(value)
    elif isinstance(node, list):
        for value in node:
            _patch_for_export(value)


def unrolled_fixed_batch(model: Any) -> Any:
    """The same weights rebuilt with batch 1 and ``unroll=True`` (training's export.keras)."""
    config = model.get_config()
    _patch_for_export(config)
    with keras_numpy_quiet():
        clone = type(model).from_config(config)
        clone.set_weights(model.get_weights())
    return clone


def _refused_ops(message: str) -> list[str]:
    """TF op names a converter error complains about."""
    return sorted(set(re.findall(r"'tf\.(\w+)'", message)))


def to_tflite(model: Any, mode: str, representative: np.ndarray | None = None) -> bytes:
    """Convert a Keras model (or SavedModel dir) to builtin ops only; errors name refused ops."""
    if mode not in MODES:
        raise ConversionError(f"quantize: must be one of {', '.join(MODES)}, got {mode!r}")
    quiet_tensorflow()
    import tensorflow as tf

    if isinstance(model, Path):
        converter = tf.lite.TFLiteConverter.from_saved_model(str(model))
    else:
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if mode != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if mode == "int8":
        if representative is None or len(representative) == 0:
            raise ConversionError("int8: a representative dataset is needed")
        converter.representative_dataset = _representative(representative)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    try:
        with quiet_conversion():
            content: bytes = converter.convert()
    except Exception as exc:  # the converter raises ConverterError, RuntimeError, ValueError...
        ops = _refused_ops(str(exc))
        if ops:
            raise ConversionError(
                f"{mode}: model needs ops outside the builtin TFLite set ({', '.join(ops)}); "
                + FIX_HINT
            ) from None
        raise ConversionError(f"{mode}: converter failed ({type(exc).__name__})") from exc
    custom = sorted({op.name for op in model_opcodes(content) if not op.builtin})
    if custom:
        raise ConversionError(
            f"{mode}: non-builtin ops in the result ({', '.join(custom)}); {FIX_HINT}"
        )
    return content


def _representative(samples: np.ndarray) -> Callable[[], Iterator[list[np.ndarray]]]:
    """A representative-dataset generator, one sample per batch (fixed-batch graphs too)."""
    chosen = samples[:REPRESENTATIVE_LIMIT].astype(np.float32)
    # TF calls this while quiet_conversion() holds fds 1 and 2: the progress bar (int8 calibration
    # runs the float model once per sample, the slow part of a conversion) draws on a copy of
    # the real stderr taken now. Log lines go to the silenced fd 2, so only a terminal sees it.
    terminal = os.dup(2)

    def generate() -> Iterator[list[np.ndarray]]:
        from agent.progress import Progress

        with (
            os.fdopen(os.dup(terminal), "w", encoding="utf-8") as stream,
            Progress("int8 calibration", len(chosen), "samples", stream=stream) as bar,
        ):
            for i in range(len(chosen)):
                yield [chosen[i : i + 1]]
                bar.update(i + 1)

    weakref.finalize(generate, os.close, terminal)
    return generate


def float_error(
    reference: Callable[[np.ndarray], Any], float_tflite: bytes, samples: np.ndarray
) -> float:
    """Largest |TFLite float - Keras| on a few samples, relative to the output's magnitude."""
    x = samples[:AGREEMENT_SAMPLES].astype(np.float32)
    expected = np.asarray(reference(x), dtype=np.float32)
    actual = Model(float_tflite).predict(x).reshape(expected.shape)
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    return float(np.max(np.abs(actual - expected), initial=0.0)) / scale


def convert(
    model_path: Path,
    mode: str,
    samples: np.ndarray,
    export_path: Path | None = None,
) -> Conversion:
    """Convert a ``.keras`` model after proving its float TFLite twin agrees with Keras.

    Args:
        model_path: the trained ``model.keras``, or a SavedModel directory.
        mode: one of MODES.
        samples: scaled inputs (N, *input_shape) — the representative set for int8 and the
            agreement check for every mode.
        export_path: training's batch-1 unrolled ``export.keras`` for recurrent models; when
            absent it is rebuilt from ``model_path``.
    """
    quiet_tensorflow()
    import tensorflow as tf

    if model_path.is_dir():
        return _convert_saved_model(model_path, mode, samples)
    model = load_keras(model_path)
    graph = model
    if is_recurrent(model):
        if export_path is not None and export_path.exists():
            graph = load_keras(export_path)
        else:
            logger.info("no export.keras: rebuilding with batch 1 and unroll=True")
            graph = unrolled_fixed_batch(model)

    def reference(x: np.ndarray) -> Any:
        with keras_numpy_quiet():
            return model.predict(x, verbose=0, batch_size=len(x))

    return _convert_checked(graph, reference, mode, samples, tf.__version__)


def _convert_saved_model(path: Path, mode: str, samples: np.ndarray) -> Conversion:
    """A SavedModel directory: its serving signature is the reference."""
    import tensorflow as tf

    try:
        with quiet_conversion():
            serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    except (OSError, KeyError, ValueError) as exc:
        raise ConversionError(f"model {path}: not a SavedModel with a serving signature") from exc

    def reference(x: np.ndarray) -> Any:
        outputs = serve(tf.constant(x))
        return next(iter(outputs.values())).numpy()

    return _convert_checked(path, reference, mode, samples, tf.__version__)


def _convert_checked(
    graph: Any,
    reference: Callable[[np.ndarray], Any],
    mode: str,
    samples: np.ndarray,
    tf_version: str,
) -> Conversion:
    """Float first, compared with the reference; then the requested mode."""
    logger.info("converting to float32 for the agreement check")
    float_tflite = to_tflite(graph, "float32")
    error = float_error(reference, float_tflite, samples)
    if not error <= AGREEMENT_RTOL:
        raise ConversionError(
            f"float TFLite disagrees with Keras (max relative error {error:.3g} > {AGREEMENT_RTOL})"
        )
    content = float_tflite
    if mode != "float32":
        logger.info("converting to %s", mode)
        content = to_tflite(graph, mode, samples)
    return Conversion(content, float_tflite, mode, error, tf_version)
