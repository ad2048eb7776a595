"""gru-forecast: a GRU that forecasts a window's last step; the anomaly score is its residual.

The graph takes the scaled window (T, F) the gateway feeds, forecasts step T from steps
1..T-1, and outputs one score: max over columns of |forecast - actual| / spread, where the
spread is each column's residual quantile on held-out normal windows (a fixed, non-trainable
diagonal Dense). A reconstruction autoencoder (gru-anomaly) copies a stuck or spoofed reading
back almost perfectly; a forecast from the recent past does not, and per-column spreads put a
noisy temperature and a quiet pressure on one scale. Built-in layers only, so model.keras loads
without custom code and the batch-1 unrolled export converts to full int8 TFLite; the agent
scores it like any one-output anomaly model.

The threshold is set on validation for a false-alarm rate per day (``false_alarms_per_day``):
the lowest score whose alarms (runs of windows above it, merged when closer than
``ALARM_GAP_STEPS``) on held-out normal windows stay within that rate.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from training.config import TrainConfig
    from training.models import ModelSpec
    from training.train import Prepared

logger = logging.getLogger(__name__)

FORECASTER = "forecaster"
SCALE_LAYER = "residual_scale"
SPREAD_QUANTILE = 0.99
# one int8 input step: a column whose residual on normal windows is below it cannot be told
# apart from quantization noise on the device, so it does not get a finer scale
SPREAD_FLOOR = 1.0 / 255.0
ALARM_GAP_STEPS = 30  # above-threshold windows closer than this are one alarm
SECONDS_PER_DAY = 86_400.0


def scorer(keras: Any, inputs: Any, spec: ModelSpec, unroll: bool) -> Any:
    """Window (T, F) -> forecast of step T from the steps before -> scaled max residual (1,)."""
    layers = keras.layers
    past = layers.Cropping1D((0, 1), name="past")(inputs)
    last = layers.Reshape((spec.features,), name="actual")(
        layers.Cropping1D((spec.window - 1, 0), name="last_step")(inputs)
    )
    predicted = forecaster(spec, inputs.shape[0], unroll)(past)
    over = layers.ReLU(name="over")(layers.Subtract(name="above")([predicted, last]))
    under = layers.ReLU(name="under")(layers.Subtract(name="below")([last, predicted]))
    residual = layers.Add(name="residual")([over, under])
    # 1 / spread per column, loaded after training (zeros until then)
    scaled = layers.Dense(
        spec.features, use_bias=False, trainable=False, kernel_initializer="zeros", name=SCALE_LAYER
    )(residual)
    column = layers.Reshape((spec.features, 1))(scaled)
    score = layers.GlobalMaxPooling1D(name="anomaly_score")(column)
    return keras.Model(inputs, score, name="gru_forecast")


def forecaster(spec: ModelSpec, batch_size: int | None = None, unroll: bool = False) -> Any:
    """The trainable part: T-1 steps in, the next step's F columns out (linear)."""
    import keras

    inputs = keras.Input((spec.window - 1, spec.features), batch_size=batch_size, name="fc_in")
    x = keras.layers.GRU(spec.units, unroll=unroll, name="history")(inputs)
    x = keras.layers.Dense(spec.units, activation="relu", name="mix")(x)
    out = keras.layers.Dense(spec.features, name="forecast")(x)
    return keras.Model(inputs, out, name=FORECASTER)


def set_spread(model: Any, spread: npt.NDArray[np.float64]) -> None:
    """Load 1 / spread (floored) as the scale layer's diagonal kernel."""
    inverse = 1.0 / np.maximum(spread, SPREAD_FLOOR)
    model.get_layer(SCALE_LAYER).set_weights([np.diag(inverse).astype(np.float32)])


def residuals(model: Any, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """|forecast - actual| per column (N, F) of windows (N, T, F), before scaling."""
    if len(x) == 0:
        return np.zeros((0, x.shape[-1]))
    predicted = model.get_layer(FORECASTER).predict(x[:, :-1], batch_size=512, verbose=0)
    return np.abs(np.asarray(predicted, np.float64) - x[:, -1].astype(np.float64))


def alarm_runs(flags: npt.NDArray[np.bool_], gap: int = ALARM_GAP_STEPS) -> list[tuple[int, int]]:
    """[start, stop) index runs of True, merging runs separated by fewer than ``gap`` Falses."""
    idx = np.flatnonzero(flags)
    if len(idx) == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) > gap)
    starts = np.concatenate([[idx[0]], idx[breaks + 1]])
    stops = np.concatenate([idx[breaks] + 1, [idx[-1] + 1]])
    return list(zip(starts.tolist(), stops.tolist(), strict=True))


def threshold_for_rate(
    scores: npt.NDArray[np.float64], steps_per_day: float, per_day: float
) -> float:
    """The lowest threshold whose alarms on these normal scores stay within ``per_day``.

    Candidates are the scores' upper quantiles; with under a day of scores even one alarm may
    be over the rate, and the threshold is then just above the largest score.
    """
    if len(scores) == 0:
        raise ValueError("no normal scores to set a threshold on")
    allowed = per_day * len(scores) / steps_per_day
    top = float(scores.max())
    candidates = np.unique(np.quantile(scores, np.linspace(0.95, 1.0, 400)))
    for value in candidates.tolist():
        if value >= top:
            break
        if len(alarm_runs(scores > value)) <= allowed:
            return float(value)
    return top * 1.0001 + 1e-9


def steps_per_day(step: dict[str, Any]) -> float:
    """Windows per simulated day at this step size (rows are one step when not time-based)."""
    if step.get("kind") == "time" and float(step.get("size", 0)) > 0:
        return SECONDS_PER_DAY / float(step["size"])
    return SECONDS_PER_DAY


def fit_forecast(
    config: TrainConfig, prepared: Prepared, model: Any
) -> tuple[dict[str, list[float]], dict[str, float], dict[str, Any]]:
    """Fit the forecaster on normal windows; spreads and threshold from held-out normals."""
    import keras

    from training.fit import MIN_CALIBRATION_NORMALS, training_callbacks

    part = model.get_layer(FORECASTER)
    part.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss="mse")
    train = prepared.x["train"][prepared.y["train"] == 0]
    val = prepared.x["val"][prepared.y["val"] == 0]
    has_val = len(val) > 0
    history = part.fit(
        train[:, :-1],
        train[:, -1],
        validation_data=(val[:, :-1], val[:, -1]) if has_val else None,
        epochs=config.epochs,
        batch_size=config.batch_size,
        callbacks=training_callbacks(config, "val_loss" if has_val else "loss"),
        verbose=0,
    )
    held_out = len(val) >= MIN_CALIBRATION_NORMALS
    calibration_set = val if held_out else train
    if not held_out:
        logger.warning("only %d held-out normal windows: calibrating on training normals", len(val))
    spread = np.quantile(residuals(model, calibration_set), SPREAD_QUANTILE, axis=0)
    set_spread(model, spread)
    scores = np.asarray(model.predict(calibration_set, batch_size=512, verbose=0)).reshape(-1)
    per_day = steps_per_day(prepared.dataset.step)
    threshold = threshold_for_rate(scores.astype(np.float64), per_day, config.false_alarms_per_day)
    calibration = {
        "method": "lowest score with at most false_alarms_per_day alarms on normal windows"
        + ("" if held_out else " (TRAINING normals)"),
        "false_alarms_per_day": config.false_alarms_per_day,
        "n_normal": len(calibration_set),
        "split": "val" if held_out else "train",
        "spread_quantile": SPREAD_QUANTILE,
    }
    curves = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    return curves, {"anomaly": threshold}, calibration
