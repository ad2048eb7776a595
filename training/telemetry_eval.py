"""Fault detection on generated telemetry: gru-forecast against a rolling z-score and an
IsolationForest, per fault kind, on runs none of them was fitted or thresholded on.

Per seed three industrial runs are generated (``iotids synth telemetry``'s generator, every
fault kind twice): the detectors learn from the first run's normal windows, get their spreads
and thresholds (``false_alarms_per_day``) from the second run's normal windows, and are scored
on the third. Steps go through the agent's telemetry featurizer and a scaler fitted on the
first run, as ``iotids train`` does. A fault counts as found when an alarm (a run of windows
above the threshold, merged across short gaps) overlaps it or the window after it; time to
detect is from the fault's first step to the first such window; an alarm overlapping no fault
is a false alarm, counted per simulated day of normal steps.

Each detector is also judged through the agent's accumulator (``agent.accumulate``, the same
code ``agent run`` uses for a bundle that carries one; name suffix ``+acc``), fitted on the
validation run and ``extra_val_s`` more generated time (their fault-free windows), with its
cross-sensor residual check and its variability check on (``FitSettings.cross``, ``.flat``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.features.telemetry import telemetry_feature_set
from training.forecast import SECONDS_PER_DAY, alarm_runs, debounced, threshold_for_rate
from training.synth.telemetry import (
    FAULTS,
    NORMAL,
    SENSORS,
    TelemetryScenario,
    synthesize_telemetry,
)

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
EXTRA_SEED = 10_000
BASE_DETECTORS = ("gru-forecast", "rolling-z", "isolation-forest")
ACCUMULATED = "+acc"
DETECTORS = BASE_DETECTORS + tuple(name + ACCUMULATED for name in BASE_DETECTORS)
NORMAL_VS_NORMAL = "normal-vs-normal"
KINDS = FAULTS["industrial"]
COLUMNS = list(telemetry_feature_set(SENSORS["industrial"]).columns)
VALUE_COLUMNS = tuple(i for i, c in enumerate(COLUMNS) if c.endswith(".value"))


@dataclass(frozen=True)
class EvalConfig:
    """Run lengths, model size and the false-alarm target of one evaluation."""

    train_s: float = 8 * 3600.0
    val_s: float = 8 * 3600.0
    test_s: float = SECONDS_PER_DAY
    window: int = 16
    units: int = 32
    epochs: int = 8
    # every n-th training window: neighbours overlap in all but one step, and a quarter of
    # them trains as well at a quarter of the cost
    train_stride: int = 4
    batch_size: int = 128
    false_alarms_per_day: float = 1.0
    # more normal time to fit the accumulator's limit on: one validation run holds too few
    # stretches of normal scores to place a rare-alarm limit
    extra_val_s: float = 3 * SECONDS_PER_DAY


@dataclass
class Run:
    """One generated run: scaled windows (N, T, F) and the fault type of each window's last step."""

    windows: F32
    types: npt.NDArray[np.str_]
    clean: npt.NDArray[np.bool_]  # no fault step anywhere in the window


@dataclass
class Outcome:
    """One detector on one test run."""

    found: dict[str, list[bool]] = field(default_factory=dict)  # per kind, per fault
    delays_s: dict[str, list[float]] = field(default_factory=dict)  # found faults only
    false_alarms: int = 0
    normal_days: float = 0.0

    @property
    def per_day(self) -> float:
        return self.false_alarms / self.normal_days if self.normal_days else 0.0


def steps_of(scenario: TelemetryScenario) -> tuple[F32, npt.NDArray[np.str_]]:
    """telemetry-v1 steps of a generated run (the agent's featurizer) and each step's type."""
    from agent.features.telemetry import TelemetryFeaturizer

    timestamp, values, _, types = synthesize_telemetry(scenario)
    featurizer = TelemetryFeaturizer(scenario.sensors)
    ts_ns = np.round(timestamp * 1e9).astype(np.int64)
    for i, sensor in enumerate(scenario.sensors):
        featurizer.push(ts_ns, sensor, values[:, i])
    steps = featurizer.flush()
    n = min(len(steps), len(types))
    return steps.values[:n], np.array(types[:n], np.str_)


def windows_of(x: F32, types: npt.NDArray[np.str_], window: int) -> Run:
    """Sliding windows ending at every step from ``window - 1`` on."""
    view = np.lib.stride_tricks.sliding_window_view(x, window, axis=0)  # (N, F, T)
    windows = np.ascontiguousarray(view.transpose(0, 2, 1)).astype(np.float32)
    fault = types != NORMAL
    dirty = np.lib.stride_tricks.sliding_window_view(fault, window).any(axis=1)
    clean: npt.NDArray[np.bool_] = np.logical_not(dirty)
    return Run(windows, types[window - 1 :], clean)


def fault_spans(types: npt.NDArray[np.str_]) -> list[tuple[str, int, int]]:
    """(kind, start, stop) of every contiguous fault run in per-window types."""
    spans = []
    start = 0
    for i in range(1, len(types) + 1):
        if i == len(types) or types[i] != types[start]:
            if types[start] != NORMAL:
                spans.append((str(types[start]), start, i))
            start = i
    return spans


def judge(scores: F64, threshold: float, types: npt.NDArray[np.str_], window: int) -> Outcome:
    """Found faults, their time to detect and false alarms of thresholded scores (1 s steps)."""
    return judge_flags(scores > threshold, types, window)


def judge_flags(flags: npt.NDArray[np.bool_], types: npt.NDArray[np.str_], window: int) -> Outcome:
    """``judge`` of per-window anomaly flags."""
    alarms = alarm_runs(flags)
    raised = debounced(flags)  # as the agent raises: 2 of the last 3 windows
    spans = fault_spans(types)
    outcome = Outcome(normal_days=float((types == NORMAL).sum()) / SECONDS_PER_DAY)
    # a window still holds fault steps until ``window`` steps after the fault ends
    reach = [(kind, start, stop + window) for kind, start, stop in spans]
    for kind, start, stop in reach:
        hits = np.flatnonzero(raised[start:stop])
        outcome.found.setdefault(kind, []).append(len(hits) > 0)
        if len(hits):
            outcome.delays_s.setdefault(kind, []).append(float(hits[0]))
    for a_start, a_stop in alarms:
        if not any(a_start < stop and start < a_stop for _, start, stop in reach):
            outcome.false_alarms += 1
    return outcome


Scorer = Callable[[F32], F64]


def detectors(
    train: Run, val: Run, cfg: EvalConfig, seed: int, columns: list[str]
) -> dict[str, Scorer]:
    """The three detectors fitted on the training run's clean windows (spreads on val's)."""
    from training.telemetry_baselines import fit_forest, forest_scores, rolling_z

    normal = train.windows[train.clean][:: cfg.train_stride]
    model = fit_model(normal, val.windows[val.clean], cfg, seed, columns)
    forest = fit_forest(normal, seed)

    def gru(windows: F32) -> F64:
        return np.asarray(model.predict(windows, batch_size=1024, verbose=0), np.float64).ravel()

    return {
        "gru-forecast": gru,
        "rolling-z": rolling_z,
        "isolation-forest": lambda w: forest_scores(forest, w),
    }


def fit_model(normal: F32, val_normal: F32, cfg: EvalConfig, seed: int, columns: list[str]) -> Any:
    """A gru-forecast scorer trained on ``normal``, residual spreads from ``val_normal``."""
    import keras

    from training.forecast import (
        SPREAD_QUANTILE,
        residuals,
        set_spread,
        target_values,
        value_columns,
    )
    from training.models import ModelSpec, build, trainable_part

    keras.utils.set_random_seed(seed)
    sensors = value_columns(columns)
    spec = ModelSpec(
        "gru-forecast", cfg.window, normal.shape[2], 2, cfg.units, 0.0, sensors=sensors
    )
    model = build(spec)
    part = trainable_part(model)
    part.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    stop = keras.callbacks.EarlyStopping(patience=2, restore_best_weights=True)
    part.fit(
        normal,
        target_values(spec, normal),
        validation_data=(val_normal, target_values(spec, val_normal)),
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        callbacks=[stop],
        verbose=0,
    )
    set_spread(model, np.quantile(residuals(model, spec, val_normal), SPREAD_QUANTILE, axis=0))
    return model


def scenario(seed: int, duration: float) -> TelemetryScenario:
    """An industrial run with the generator's default schedule of every fault kind twice."""
    return TelemetryScenario(kind="industrial", seed=seed, duration=duration).with_default_faults()


def evaluate_seed(seed: int, cfg: EvalConfig) -> dict[str, Outcome]:
    """Train, threshold and test every detector on the three runs of ``seed``."""
    from agent.accumulate import Accumulator
    from training.accumulate_fit import FitSettings, Stretch, fit_accumulator
    from training.preprocess import Scaler

    runs = [
        steps_of(scenario(seed * 3 + k, length))
        for k, length in enumerate((cfg.train_s, cfg.val_s, cfg.test_s))
    ]
    # the extra validation time comes from seeds no other run uses
    runs.append(steps_of(scenario(EXTRA_SEED + seed, cfg.extra_val_s)))
    scaler = Scaler.fit(runs[0][0])  # as ``iotids train``: the training run's steps
    train, val, test, extra = (windows_of(scaler.transform(x), t, cfg.window) for x, t in runs)
    # each window's last step as the agent's accumulator sees it: raw, before scaling
    val_raw, test_raw, extra_raw = (x[cfg.window - 1 :] for x, _ in runs[1:])
    outcomes = {}
    for name, score in detectors(train, val, cfg, seed, COLUMNS).items():
        val_scores = score(val.windows)
        threshold = threshold_for_rate(
            val_scores[val.clean], SECONDS_PER_DAY, cfg.false_alarms_per_day
        )
        test_scores = score(test.windows)
        outcomes[name] = judge(test_scores, threshold, test.types, cfg.window)
        stretches = [
            Stretch(val_scores, val_raw, val.clean),
            Stretch(score(extra.windows), extra_raw, extra.clean),
        ]
        spec = fit_accumulator(
            stretches,
            VALUE_COLUMNS,
            SECONDS_PER_DAY,
            cfg.false_alarms_per_day,
            FitSettings(cross=True, flat=True),
        )
        ratios = Accumulator(spec).ratios(test_scores, test_raw)
        outcomes[name + ACCUMULATED] = judge_flags(ratios >= 1.0, test.types, cfg.window)
        for key in (name, name + ACCUMULATED):
            logger.info("seed %d %s: %s", seed, key, summary(outcomes[key]))
    return outcomes


def summary(outcome: Outcome) -> dict[str, Any]:
    """Recall and median time to detect per kind, false alarms per day."""
    return {
        **{
            kind: (
                round(float(np.mean(outcome.found.get(kind, [False]))), 2),
                round(float(np.median(outcome.delays_s[kind])), 1)
                if outcome.delays_s.get(kind)
                else None,
            )
            for kind in KINDS
        },
        "fa_per_day": round(outcome.per_day, 2),
    }


def ton_iot_auc(path: str, seed: int, cfg: EvalConfig) -> dict[str, float]:
    """ROC AUC of every detector on one TON_IoT device's test windows (time-block split).

    The same split and scaled windows as ``iotids train --dataset ton-iot``; each detector
    learns from the normal training windows (model spreads from the normal validation ones).
    Beside each detector, ``"<name> normal-vs-normal"``: the AUC (folded, >= 0.5) with which
    its scores tell one normal run's test windows from the other normal runs'. No attack is
    involved, so this is how far differences between blocks of the file alone move an AUC
    from 0.5; an attack AUC not above it is not evidence of detection.
    """
    from sklearn.metrics import roc_auc_score

    from training.config import TrainConfig
    from training.datasets import load
    from training.train import prepare

    config = TrainConfig(
        "ton-iot", path, "gru-forecast", "", window=cfg.window, split="time-block", seed=seed
    )
    prepared = prepare(config, load("ton-iot", path))
    x, y = prepared.x, prepared.y
    train = Run(x["train"], np.zeros(0, np.str_), y["train"] == 0)
    val = Run(x["val"], np.zeros(0, np.str_), y["val"] == 0)
    result = {}
    for name, score in detectors(train, val, cfg, seed, prepared.dataset.columns).items():
        scores = score(x["test"])
        both = len(np.unique(y["test"])) == 2
        result[name] = float(roc_auc_score(y["test"], scores)) if both else float("nan")
        result[f"{name} {NORMAL_VS_NORMAL}"] = _between_normal_runs(
            scores, y["test"], prepared.block["test"]
        )
        logger.info(
            "TON_IoT %s seed %d %s: AUC %.3f (normal vs normal %.3f)",
            path,
            seed,
            name,
            result[name],
            result[f"{name} {NORMAL_VS_NORMAL}"],
        )
    return result


def _between_normal_runs(
    scores: F64, y: npt.NDArray[np.int64], block: npt.NDArray[np.int64]
) -> float:
    """Folded AUC of scores separating the first normal run's windows from later normal runs'."""
    from sklearn.metrics import roc_auc_score

    normal = y == 0
    runs = np.unique(block[normal])
    if len(runs) < 2:
        return float("nan")
    auc = float(roc_auc_score(block[normal] == runs[0], scores[normal]))
    return max(auc, 1.0 - auc)
