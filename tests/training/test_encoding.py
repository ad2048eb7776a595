"""The piecewise-linear input encoding: knots on the int8 grid, exact bins, int8 conversion."""

from __future__ import annotations

import numpy as np
import pytest

from training.models import (
    INPUT_LEVELS,
    ModelSpec,
    build,
    encoding_knots,
    encoding_width,
    fit_encoding,
)

KERAS_NUMPY_COPY = (
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)


def _heavy_tailed(rows: int, seed: int = 0) -> np.ndarray:
    """Scaled features shaped like flow rates: most rows near 0, a few far out; one constant."""
    rng = np.random.default_rng(seed)
    rate = np.clip(rng.pareto(1.5, rows) / 60.0, 0.0, 1.0)
    flag = (rng.random(rows) < 0.3).astype(np.float64)
    return np.stack([rate, flag, np.zeros(rows)], axis=1).astype(np.float32)


def test_knots_sit_on_the_int8_input_grid_and_are_distinct() -> None:
    knots = encoding_knots(_heavy_tailed(2000), bins=32)
    for edges in knots:
        np.testing.assert_allclose(edges * INPUT_LEVELS, np.round(edges * INPUT_LEVELS), atol=1e-9)
        assert np.all(np.diff(edges) > 0)
    assert len(knots[1]) == 2  # a 0/1 flag has one bin
    assert len(knots[2]) == 1  # a constant feature has none
    assert 2 < len(knots[0]) <= 33  # the heavy tail gets several bins, at most 32
    assert encoding_width(knots) == len(knots[0])


@pytest.mark.tf
def test_dnn_bins_fill_from_zero_to_one_across_their_knots() -> None:
    knots = [np.array([0.0, 0.2, 1.0]), np.array([0.0, 1.0])]
    spec = ModelSpec("dnn", 1, 2, 3, units=4, encoding=encoding_width(knots))
    model = build(spec)
    fit_encoding(model, knots)
    import keras

    encoder = keras.Model(model.inputs, model.get_layer("bin_fill").output)
    x = np.array([[0.1, 0.5], [0.6, 0.0], [1.0, 1.0]], np.float32)
    expected = [[0.5, 0.0, 0.5], [1.0, 0.5, 0.0], [1.0, 1.0, 1.0]]
    np.testing.assert_allclose(encoder.predict(x, verbose=0), expected, atol=1e-6)


def test_only_dnn_and_recurrent_classifiers_take_an_encoding() -> None:
    with pytest.raises(ValueError, match="encoding"):
        ModelSpec("cnn", 8, 4, 2, encoding=8)
    with pytest.raises(ValueError, match="encoding"):
        ModelSpec("dnn", 1, 4, 2, encoding=-1)


@pytest.mark.tf
@pytest.mark.filterwarnings(KERAS_NUMPY_COPY)
def test_encoded_dnn_converts_to_builtin_int8_and_agrees_with_keras() -> None:
    import keras
    from ai_edge_litert.interpreter import Interpreter

    from converters.quantize import to_tflite

    keras.utils.set_random_seed(0)
    x = _heavy_tailed(600)
    y = (x[:, 0] > np.median(x[:, 0])).astype(np.int64) + (x[:, 1] > 0.5)
    knots = encoding_knots(x)
    spec = ModelSpec("dnn", 1, 3, 3, units=16, encoding=encoding_width(knots))
    model = build(spec)
    fit_encoding(model, knots)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=5, batch_size=32, verbose=0)
    interpreter = Interpreter(model_content=to_tflite(model, "int8", x[:100]))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert inp["dtype"] == np.int8
    scale, zero = inp["quantization"]
    got = []
    for row in x[:200]:
        q = np.clip(np.round(row / scale + zero), -128, 127).astype(np.int8)[None]
        interpreter.set_tensor(inp["index"], q)
        interpreter.invoke()
        got.append(int(interpreter.get_tensor(out["index"])[0].argmax()))
    expected = model.predict(x[:200], verbose=0).argmax(axis=1)
    assert (np.array(got) == expected).mean() >= 0.95
