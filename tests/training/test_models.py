"""Every model builds and trains; the recurrent export graph predicts what the model does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.models import MODEL_TYPES, RECURRENT, ModelSpec, build, export_model, trainable_part

# Keras 3.15 saving calls np.array(variable) without copy=, which numpy 2.4 deprecates.
KERAS_NUMPY_COPY = (
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)
pytestmark = [pytest.mark.tf, pytest.mark.filterwarnings(KERAS_NUMPY_COPY)]


def _spec(model_type: str) -> ModelSpec:
    return ModelSpec(model_type, 1 if model_type == "dnn" else 8, 6, 3, units=8)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_each_model_trains_one_epoch_on_tiny_data(model_type: str) -> None:
    import keras

    keras.utils.set_random_seed(0)
    spec = _spec(model_type)
    model = build(spec)
    rng = np.random.default_rng(0)
    x = rng.random((32, *spec.input_shape)).astype(np.float32)
    part = trainable_part(model)
    if spec.task == "anomaly":
        part.compile("adam", "mse")
        if model_type == "gru-forecast":  # learns the last step, not the window
            from training.forecast import target_values

            history = part.fit(x, target_values(spec, x), epochs=1, verbose=0)
        else:
            history = part.fit(x, x, epochs=1, verbose=0)
        assert model.predict(x, verbose=0).shape == (32, 1)  # one score per window
    else:
        part.compile("adam", "sparse_categorical_crossentropy")
        history = part.fit(x, rng.integers(0, 3, 32), epochs=1, verbose=0)
        probs = model.predict(x, verbose=0)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)  # softmax
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.parametrize("model_type", RECURRENT)
def test_export_keras_matches_model_keras(model_type: str, tmp_path: Path) -> None:
    import keras

    spec = _spec(model_type)
    model = build(spec)
    model.save(tmp_path / "model.keras")
    export_model(spec, model).save(tmp_path / "export.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    exported = keras.saving.load_model(tmp_path / "export.keras")
    assert exported.inputs[0].shape[0] == 1  # fixed batch of 1
    x = np.random.default_rng(1).random((5, *spec.input_shape)).astype(np.float32)
    expected = loaded.predict(x, verbose=0)
    got = np.concatenate([exported.predict(x[i : i + 1], verbose=0) for i in range(5)])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_anomaly_score_is_the_reconstruction_mse() -> None:
    spec = _spec("gru-anomaly")
    model = build(spec)
    x = np.random.default_rng(2).random((4, *spec.input_shape)).astype(np.float32)
    recon = trainable_part(model).predict(x, verbose=0)
    expected = ((recon - x) ** 2).mean(axis=(1, 2))
    np.testing.assert_allclose(model.predict(x, verbose=0)[:, 0], expected, rtol=1e-4)
