"""gru-forecast: a GRU that forecasts a window's last step; the anomaly score is its residual.

The graph takes the scaled window (T, F) the gateway feeds, forecasts step T from steps
1..T-1, estimates each sensor's value at step T from the other sensors alone, and outputs one
score: max over these targets of tanh(|estimate - actual| / (spread · SCORE_SCALE)), where the
spread is each target's residual quantile on held-out normal windows (a fixed, non-trainable
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
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from agent.accumulate import AccumulatorSpec
    from training.config import TrainConfig
    from training.models import ModelSpec
    from training.train import Prepared

logger = logging.getLogger(__name__)

FORECASTER = "forecaster"
SCALE_LAYER = "residual_scale"
SPREAD_QUANTILE = 0.99
# about 5 int8 input steps: a column that is constant on normal windows (a staleness that stays
# 0 while the link is up) gets estimates that wander by a few steps on inputs training never
# showed, and a finer scale turned that wander into false alarms (on the tuning seeds)
SPREAD_FLOOR = 0.02
# residuals in spreads are divided by this before tanh: thresholds of 3-7 spreads map to
# 0.3-0.6, where tanh is still steep
SCORE_SCALE = 10.0
ALARM_GAP_STEPS = 30  # above-threshold windows closer than this are one alarm
# the agent raises an event when RAISE_K of the last RAISE_N windows cross the threshold
# (agent.config.Debounce defaults): alarms are counted the same way here
RAISE_K, RAISE_N = 2, 3
SECONDS_PER_DAY = 86_400.0


def value_columns(columns: Sequence[str]) -> tuple[int, ...]:
    """Per column, the index of its sensor's ``.value`` column (-1: not a sensor's column).

    Columns are ``sensor.suffix`` (telemetry-v1, TON_IoT); a column without a sensor (the
    reading interval) is context every head sees.
    """
    value_of = {c.rsplit(".", 1)[0]: i for i, c in enumerate(columns) if c.endswith(".value")}
    owners = [value_of.get(c.rsplit(".", 1)[0], -1) if "." in c else -1 for c in columns]
    return tuple(owners) if len(value_of) > 1 else tuple(-1 for _ in columns)


def targets(spec: ModelSpec) -> list[int]:
    """The columns the outputs estimate: every column's next step, then each sensor's value."""
    return list(range(spec.features)) + nowcast_columns(spec)


def nowcast_columns(spec: ModelSpec) -> list[int]:
    """Sensors' value columns estimated from the other sensors alone, in column order."""
    return sorted({v for v in spec.sensors if v >= 0})


def scorer(keras: Any, inputs: Any, spec: ModelSpec, unroll: bool) -> Any:
    """Window (T, F) -> forecasts and cross-sensor estimates -> scaled max residual (1,)."""
    layers = keras.layers
    width = len(targets(spec))
    predicted = forecaster(spec, inputs.shape[0], unroll)(inputs)
    last = layers.Reshape((spec.features,), name="last")(
        layers.Cropping1D((spec.window - 1, 0), name="last_step")(inputs)
    )
    # the last step's value of every target column (fixed selection weights, set at build)
    actual = _fixed(layers, "actual", _selection(spec), last)
    over = layers.ReLU(name="over")(layers.Subtract(name="above")([predicted, actual]))
    under = layers.ReLU(name="under")(layers.Subtract(name="below")([actual, predicted]))
    residual = layers.Add(name="residual")([over, under])
    # 1 / spread per target, loaded after training (zeros until then)
    scaled = _fixed(layers, SCALE_LAYER, np.zeros((width, width), np.float32), residual)
    # bounded to 0..1: an int8 output's 256 levels must resolve scores near the threshold,
    # not span the largest fault residual of the calibration set (tanh is monotone, so the
    # threshold keeps its meaning)
    bounded = layers.Activation("tanh", name="bounded")(scaled)
    column = layers.Reshape((width, 1))(bounded)
    score = layers.GlobalMaxPooling1D(name="anomaly_score")(column)
    return keras.Model(inputs, score, name="gru_forecast")


def _fixed(layers: Any, name: str, kernel: npt.NDArray[np.float32], x: Any) -> Any:
    """``x`` through a non-trainable bias-free Dense holding ``kernel`` (saved as a weight)."""
    layer = layers.Dense(
        kernel.shape[1], use_bias=False, trainable=False, kernel_initializer="zeros", name=name
    )
    out = layer(x)
    layer.set_weights([kernel])
    return out


def _selection(spec: ModelSpec) -> npt.NDArray[np.float32]:
    """(F, targets) 0/1 kernel picking each target column out of a step."""
    cols = targets(spec)
    kernel = np.zeros((spec.features, len(cols)), np.float32)
    kernel[cols, np.arange(len(cols))] = 1.0
    return kernel


def forecaster(spec: ModelSpec, batch_size: int | None = None, unroll: bool = False) -> Any:
    """The trainable part: the window in; the last step forecast from the steps before it, then
    each sensor's last value estimated from the other sensors' whole window (a slow drift or a
    spoofed reading follows its own past, not the process the other sensors see)."""
    import keras

    layers = keras.layers
    inputs = keras.Input(spec.input_shape, batch_size=batch_size, name="fc_in")
    past = layers.Cropping1D((0, 1), name="past")(inputs)
    x = layers.GRU(spec.units, unroll=unroll, name="history")(past)
    x = layers.Dense(spec.units, activation="relu", name="mix")(x)
    outputs = [layers.Dense(spec.features, name="forecast")(x)]
    for target in nowcast_columns(spec):
        hide = np.diag([0.0 if owner == target else 1.0 for owner in spec.sensors])
        others = _fixed(layers, f"others_{target}", hide.astype(np.float32), inputs)
        h = layers.GRU(max(4, spec.units // 2), unroll=unroll, name=f"cross_{target}")(others)
        outputs.append(layers.Dense(1, name=f"estimate_{target}")(h))
    out = outputs[0] if len(outputs) == 1 else layers.Concatenate(name="estimates")(outputs)
    return keras.Model(inputs, out, name=FORECASTER)


def set_spread(model: Any, spread: npt.NDArray[np.float64]) -> None:
    """Load 1 / (spread (floored) · SCORE_SCALE) as the scale layer's diagonal kernel."""
    inverse = 1.0 / (np.maximum(spread, SPREAD_FLOOR) * SCORE_SCALE)
    model.get_layer(SCALE_LAYER).set_weights([np.diag(inverse).astype(np.float32)])


def target_values(spec: ModelSpec, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """What the trainable part learns to output for windows (N, T, F)."""
    return np.ascontiguousarray(x[:, -1][:, targets(spec)])


def residuals(model: Any, spec: ModelSpec, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """|estimate - actual| per target (N, targets) of windows (N, T, F), before scaling."""
    if len(x) == 0:
        return np.zeros((0, len(targets(spec))))
    predicted = model.get_layer(FORECASTER).predict(x, batch_size=512, verbose=0)
    return np.abs(np.asarray(predicted, np.float64) - target_values(spec, x))


def debounced(
    flags: npt.NDArray[np.bool_], k: int = RAISE_K, n: int = RAISE_N
) -> npt.NDArray[np.bool_]:
    """True where at least ``k`` of the last ``n`` windows were flagged (the agent's raise rule)."""
    counts = np.convolve(flags.astype(np.int64), np.ones(n, np.int64))[: len(flags)]
    return np.asarray(counts >= k)


def alarm_runs(flags: npt.NDArray[np.bool_], gap: int = ALARM_GAP_STEPS) -> list[tuple[int, int]]:
    """[start, stop) runs of raised windows (debounced ``flags``), merged across short gaps."""
    idx = np.flatnonzero(debounced(flags))
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


def steps_per_day(step: dict[str, Any] | None) -> float:
    """Windows per simulated day at this step size (rows are one step when not time-based)."""
    if step is not None and step.get("kind") == "time" and float(step.get("size", 0)) > 0:
        return SECONDS_PER_DAY / float(step["size"])
    return SECONDS_PER_DAY


def fit_forecast(
    config: TrainConfig, prepared: Prepared, model: Any
) -> tuple[dict[str, list[float]], dict[str, float], dict[str, Any]]:
    """Fit the forecaster on normal windows; spreads and threshold from held-out normals."""
    import keras

    from training.fit import fit_on_normals

    part = model.get_layer(FORECASTER)
    part.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss="mse")
    spec = prepared.spec
    curves, calibration_set, held_out = fit_on_normals(
        config, part, prepared, lambda x: target_values(spec, x)
    )
    spread = np.quantile(residuals(model, spec, calibration_set), SPREAD_QUANTILE, axis=0)
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
        "accumulator": fit_forecast_accumulator(config, prepared, model, held_out).to_dict(),
    }
    return curves, {"anomaly": threshold}, calibration


def fit_forecast_accumulator(
    config: TrainConfig, prepared: Prepared, model: Any, held_out: bool
) -> AccumulatorSpec:
    """The agent's accumulator (agent/accumulate.py) fitted on the calibration split in order.

    Its attack windows split the normals into stretches. Runs of equal values are counted on
    scaled steps: scaling maps equal readings to equal values, and clipping can only join
    runs, so the allowed runs are never shorter than the raw readings' (the agent's) runs.
    """
    from training.accumulate_fit import FitSettings, Stretch, fit_accumulator

    split = "val" if held_out else "train"
    x, normal = prepared.x[split], prepared.y[split] == 0
    scores = np.asarray(model.predict(x, batch_size=512, verbose=0), np.float64).reshape(-1)
    columns = prepared.dataset.columns
    sensors = [i for i, c in enumerate(columns) if c.endswith(".value")]
    stretches = [Stretch(scores, x[:, -1], normal)]
    fit = (stretches, sensors, steps_per_day(prepared.dataset.step), config.false_alarms_per_day)
    # The cross and variability checks read the agent's raw steps, so they fit on raw normal
    # rows: the training split's too, as their spans need runs longer than the longest of them
    # and a time-block split cuts validation into short blocks. A linear map of a few averages
    # per sensor barely overfits; a band of one mean per sensor not at all.
    runs = normal_raw_runs(prepared, "train") + normal_raw_runs(prepared, "val")
    cross = len(sensors) >= 2
    for settings, without in (
        (FitSettings(cross=cross, flat=True), "variability"),
        (FitSettings(cross=cross), "cross-sensor"),
    ):
        if not settings.cross and not settings.flat:
            break
        try:
            return fit_accumulator(*fit, settings, cross_runs=runs)
        except ValueError as exc:
            logger.warning("accumulator without the %s check: %s", without, exc)
    return fit_accumulator(*fit)


def normal_raw_runs(prepared: Prepared, split: str) -> list[npt.NDArray[np.float32]]:
    """The unscaled steps of each of the split's contiguous normal row ranges."""
    dataset = prepared.dataset
    return [
        dataset.x[start:end]
        for start, end in prepared.split.ranges.get(split, [])
        if end > start and dataset.label_names[start] == dataset.benign
    ]
