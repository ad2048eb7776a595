"""Per-class logit offsets: fitted for macro-F1, folded into the dnn's biases, validated."""

from __future__ import annotations

import numpy as np
import pytest

from training.config import ConfigError, TrainConfig
from training.offsets import _best_value, fit_offsets, macro_f1, shifted

KERAS_NUMPY_COPY = (
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)


def _members(rows: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two members' softmaxes over 3 classes where class 2 is called too rarely (scaled x0.2)."""
    rng = np.random.default_rng(seed)
    y = rng.choice(3, rows, p=[0.6, 0.3, 0.1])
    logits = rng.normal(0, 1, (2, rows, 3))
    logits[:, np.arange(rows), y] += 2.0
    p = np.exp(logits)
    p[..., 2] *= 0.2
    return p / p.sum(axis=-1, keepdims=True), y


def test_offsets_raise_macro_f1_and_the_largest_class_stays_put() -> None:
    members, y = _members()
    before = macro_f1(y, members.mean(axis=0).argmax(axis=1), 3)
    offsets = fit_offsets(members, y, limit=3.0)
    assert offsets[0] == 0.0
    assert offsets[2] > 0.5  # the under-called class is pushed up
    assert macro_f1(y, shifted(members, offsets).argmax(axis=1), 3) > before + 0.01
    fresh, y_fresh = _members(seed=1)  # and it carries over to rows it was not fitted on
    assert macro_f1(y_fresh, shifted(fresh, offsets).argmax(axis=1), 3) > macro_f1(
        y_fresh, fresh.mean(axis=0).argmax(axis=1), 3
    )


def test_zero_offsets_leave_the_averaged_softmax_and_f1_matches_sklearn() -> None:
    from sklearn.metrics import f1_score

    members, y = _members(50)
    np.testing.assert_allclose(shifted(members, np.zeros(3)), members.mean(axis=0), atol=1e-9)
    predicted = members.mean(axis=0).argmax(axis=1)
    assert macro_f1(y, predicted, 3) == pytest.approx(f1_score(y, predicted, average="macro"))


def test_a_value_moves_only_for_a_gain_and_then_to_the_middle_of_the_best_run() -> None:
    grid = np.round(np.arange(-1.0, 1.05, 0.5), 6)  # -1, -0.5, 0, 0.5, 1
    assert _best_value(grid, np.array([0.5, 0.7, 0.7, 0.7, 0.6]), 0.0) == 0.0
    assert _best_value(grid, np.array([0.5, 0.6, 0.6, 0.7, 0.7]), 0.0) == 0.5
    assert _best_value(grid, np.array([0.9, 0.9, 0.9, 0.7, 0.9]), 0.5) == -0.5


@pytest.mark.tf
@pytest.mark.filterwarnings(KERAS_NUMPY_COPY)
def test_folded_offsets_make_the_one_model_output_the_shifted_softmax() -> None:
    import keras

    from training.models import ModelSpec, build
    from training.offsets import fold_offsets, member_probabilities

    keras.utils.set_random_seed(0)
    model = build(ModelSpec("dnn", 1, 4, 3, units=4, members=3))
    x = np.random.default_rng(0).random((32, 4)).astype(np.float32)
    members = member_probabilities(model, x)
    offsets = np.array([0.0, -0.7, 1.3])
    fold_offsets(model, offsets)
    np.testing.assert_allclose(model.predict(x, verbose=0), shifted(members, offsets), atol=1e-5)


def test_bad_offset_limits_name_their_key() -> None:
    for bad in (-0.1, 5.5, True, "1"):
        with pytest.raises(ConfigError, match=r"train\.class_offsets"):
            TrainConfig("nsl-kdd", "x", "dnn", "out", class_offsets=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"train\.class_offsets"):
        TrainConfig("nsl-kdd", "x", "cnn", "out", class_offsets=1.0)
    assert TrainConfig("nsl-kdd", "x", "dnn", "out", class_offsets=2.0).class_offsets == 2.0
