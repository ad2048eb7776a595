"""Stable training: what early stopping watches, minimum epochs, seed-ensemble dnn, teacher."""

from __future__ import annotations

import numpy as np
import pytest

from training.config import ConfigError, TrainConfig
from training.distill import out_of_fold_probabilities
from training.fit import SMALL_VALIDATION, small_validation, training_callbacks
from training.models import ModelSpec, build

KERAS_NUMPY_COPY = (
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)


def test_a_class_with_few_validation_windows_makes_the_split_small() -> None:
    y_train = np.repeat([0, 1, 2], 200)
    big = np.repeat([0, 1, 2], SMALL_VALIDATION)
    assert not small_validation(y_train, big)
    thin = np.concatenate([np.repeat([0, 1], 100), np.full(SMALL_VALIDATION - 1, 2)])
    assert small_validation(y_train, thin)
    assert small_validation(y_train, np.repeat([0, 1], 100))  # class 2 has none at all


def test_classes_absent_from_training_do_not_count() -> None:
    assert not small_validation(np.repeat([0, 2], 100), np.repeat([0, 2], 40))


@pytest.mark.tf
def test_early_stopping_waits_for_the_minimum_epoch_count() -> None:
    config = TrainConfig("nsl-kdd", "x", "dnn", "out", epochs=50, min_epochs=12, verbose=0)
    (stop,) = training_callbacks(config, "val_loss")
    assert stop.start_from_epoch == 11  # 0-based: epochs 1..12 always run
    short = TrainConfig("nsl-kdd", "x", "dnn", "out", epochs=5, min_epochs=12, verbose=0)
    assert training_callbacks(short, "val_loss")[0].start_from_epoch == 4


def test_bad_stability_settings_name_their_key() -> None:
    with pytest.raises(ConfigError, match=r"train\.min_epochs"):
        TrainConfig("nsl-kdd", "x", "dnn", "out", min_epochs=0)
    with pytest.raises(ConfigError, match=r"train\.distill"):
        TrainConfig("nsl-kdd", "x", "dnn", "out", distill=1.0)
    with pytest.raises(ConfigError, match=r"train\.class_weight_power"):
        TrainConfig("nsl-kdd", "x", "dnn", "out", class_weight_power=1.5)
    with pytest.raises(ConfigError, match=r"train\.members"):
        TrainConfig("nsl-kdd", "x", "cnn", "out", members=3)


def test_the_teacher_never_scores_a_row_it_was_trained_on() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((300, 1, 4)).astype(np.float32)
    y = (x[:, 0, 0] > 0.5).astype(np.int64)
    y[:5] = 2  # a rare class: probabilities still land in its own column
    p = out_of_fold_probabilities(x, y, 4, trees=20, seed=0)
    assert p.shape == (300, 4)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    assert np.all(p[:, 3] == 0)  # a class no row has gets no probability
    # out of fold: on a rule the trees learn, held-out rows are mostly but not all one-hot
    assert 0.8 < (p.argmax(axis=1) == y).mean() < 1.0


@pytest.mark.tf
@pytest.mark.filterwarnings(KERAS_NUMPY_COPY)
def test_averaged_members_are_one_model_that_converts_to_one_int8_tflite() -> None:
    import keras
    from ai_edge_litert.interpreter import Interpreter

    from converters.quantize import to_tflite

    keras.utils.set_random_seed(0)
    spec = ModelSpec("dnn", 1, 3, 3, units=8, members=3)
    model = build(spec)
    heads = [model.get_layer(f"member_probabilities_{m}") for m in range(3)]
    x = np.random.default_rng(0).random((64, 3)).astype(np.float32)
    members = keras.Model(model.inputs, [h.output for h in heads]).predict(x, verbose=0)
    np.testing.assert_allclose(model.predict(x, verbose=0), np.mean(members, axis=0), atol=1e-6)
    interpreter = Interpreter(model_content=to_tflite(model, "int8", x))
    interpreter.allocate_tensors()
    assert len(interpreter.get_output_details()) == 1
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    with pytest.raises(ValueError, match="members"):
        ModelSpec("gru", 4, 3, 3, members=2)
