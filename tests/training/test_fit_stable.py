"""Stable training: what early stopping watches, minimum epochs, seed-ensemble dnn, teacher."""

from __future__ import annotations

import numpy as np
import pytest

from training.config import ConfigError, TrainConfig
from training.distill import augmented, out_of_fold_probabilities, swapped_rows
from training.fit import SMALL_VALIDATION, fit_classifier, small_validation, training_callbacks
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
    for bad in (-0.5, 11):
        with pytest.raises(ConfigError, match=r"train\.distill_augment"):
            TrainConfig("nsl-kdd", "x", "dnn", "out", distill_augment=bad)
    with pytest.raises(ConfigError, match=r"train\.distill_augment"):
        TrainConfig("nsl-kdd", "x", "cnn", "out", distill_augment=1)
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


def _table(rows: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows of 4 features, class 0/1 by the first, and a 5-row class 2 of its own."""
    rng = np.random.default_rng(seed)
    x = rng.random((rows, 4)).astype(np.float32)
    y = (x[:, 0] > 0.5).astype(np.int64)
    x[:5, 1] = 7.0
    y[:5] = 2
    return x, y


def test_augmented_rows_take_each_value_from_a_row_of_their_class() -> None:
    x, y = _table()
    copies = swapped_rows(x, y, 50, 0.0, seed=1)  # nothing swapped: training rows as they are
    assert (copies[:, None] == x[None]).all(axis=2).any(axis=1).all()
    new = swapped_rows(x, y, 400, 0.5, seed=1)
    assert new.shape == (400, 4)
    assert not (new[:, None] == x[None]).all(axis=2).any(axis=1).all()  # new rows, not copies
    for row in new:
        # some class holds every value of the row, column by column
        assert any(all(np.isin(row[f], x[y == c, f]) for f in range(4)) for c in np.unique(y))


def test_the_teacher_labels_augmented_rows_and_their_weight_follows_its_label() -> None:
    from types import SimpleNamespace

    x, y = _table()
    prepared = SimpleNamespace(x={"train": x}, y={"train": y}, labels=["a", "b", "c", "never"])
    config = TrainConfig("csv", "x", "dnn", "out", distill_augment=2, baseline_trees=20)
    class_weight = np.array([1.0, 2.0, 30.0, 0.0])
    new, targets, weights = augmented(config, prepared, class_weight)  # type: ignore[arg-type]
    assert len(new) == len(targets) == len(weights) == 600
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, atol=1e-5)
    assert np.all(targets[:, 3] == 0)  # a class with no training row is never taught
    np.testing.assert_allclose(weights, targets @ class_weight, rtol=1e-5)
    # rows swapped inside class 0 or 1 keep the first feature's side: the teacher agrees
    plain = targets[:, 2] == 0
    assert (targets[plain].argmax(axis=1) == (new[plain, 0] > 0.5)).mean() > 0.9


@pytest.mark.tf
@pytest.mark.filterwarnings(KERAS_NUMPY_COPY)
def test_a_dnn_fits_on_training_and_augmented_rows_together() -> None:
    from types import SimpleNamespace

    import keras

    keras.utils.set_random_seed(0)
    x, y = _table(240)
    x_val, y_val = _table(60, seed=1)
    prepared = SimpleNamespace(
        x={"train": x, "val": x_val}, y={"train": y, "val": y_val}, labels=["a", "b", "c"],
        position={"train": np.full(len(y), -1)}, benign=None,
    )  # fmt: skip
    config = TrainConfig(
        "csv", "x", "dnn", "out", distill_augment=1, epochs=2, min_epochs=1, verbose=0,
        baseline_trees=10, units=4,
    )  # fmt: skip
    model = build(ModelSpec("dnn", 1, 4, 3, units=4))
    history = fit_classifier(config, prepared, model)  # type: ignore[arg-type]
    assert len(history["loss"]) == 2
    np.testing.assert_allclose(model.predict(x_val, verbose=0).sum(axis=1), 1.0, rtol=1e-5)
