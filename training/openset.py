"""Train the benign model that sits beside a classifier (desktop side of ``agent.openset``).

Windows come from the same feature pipeline as the classifier's (``training.datasets``, which
calls ``agent/features``), with the classifier bundle's step and window; only windows whose
every step is benign are used. The model is a small dense autoencoder over the window summary
(``agent.openset.summarize``: per feature the mean, max and last step of the window scaled by
its own min-max scaler over the benign training steps, or with ``scaler = LOG_MINMAX``
``agent.openset.LogScaler``: log1p first), fit on the first 80 % of benign windows in time
order. It is converted to full int8
TFLite (the training summaries are the representative set) and everything after is measured on
that int8 model: the per-dimension error scale on the training windows, and the threshold —
the signed floor a site calibration never goes below — from the scores of the last 20 % (never
trained on): their ``quantile``, or higher where the site calibration's own tail fit
(``agent.calibration.tail_threshold``) says benign windows would still cross it more than
``target_false_alarms_per_day`` (when the caller knows the windows per day: time steps). A
few hundred held-out windows have no real 99.9th percentile (it is their maximum), and an edge
the training network's own downloads and logins cross several times an hour raises `unknown`
alarms that a new attack starting just after then continues instead of raising its own.

A stream's first windows (a network booting: every sensor connecting within a second or two)
are a few windows in a recording the model hardly learns, and none is among the held-out
20 %: an uncalibrated pair raised ``unknown`` at the start of every other benign stream of its
own training network. Given the recordings' own stream starts (``stream_starts``: each group's
first ``START_WINDOWS`` windows, padded as the bundle pads them), the section also carries a
``start_threshold``: ``START_MARGIN`` x their highest score, never below the threshold, over
the first ``start_windows`` windows (where the starts were near the edge, and a window more). A
recording has one start, and starts differ (how the connections fall into the first steps),
so one start's maximum is one draw: the margin covers the spread seen on development seeds.

Given the feature ``columns``, the benign model is scored per feature group
(``agent.benign_groups``): each group's signed edge is fitted on the held-out scores like the
threshold above, at the target rate divided by the number of groups and never below 1 (one
dimension's typical error on the training windows: below it a group says nothing). The
section's ``threshold`` stays the one score's edge, which the agent applies until a site
calibration brings group edges; the groups carry their own stream-start edge (of the largest
ratio of a group's score to its signed edge) for after that.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from agent.benign_groups import (
    RANGE,
    Group,
    Groups,
    Layout,
    group_columns,
    group_scores,
    wide_transform,
)
from agent.bundle import Scaler
from agent.features.steps import sliding_windows, stream_windows
from agent.openset import (
    LOG_MINMAX,
    MAX_START_RATIO,
    MIN_ERROR_SCALE,
    BenignScaler,
    LogScaler,
    OpenSetSpec,
    summarize,
)
from agent.runtime import Model
from agent.stream_start import START_MARGIN, START_WINDOWS
from training.datasets.base import Dataset

logger = logging.getLogger(__name__)

TRAIN_FRACTION = 0.8
GOLDEN_COUNT = 4
MIN_WINDOWS = 50


class OpenSetError(ValueError):
    """Data the benign model cannot be trained on; one line says why."""


@dataclass(frozen=True)
class BenignTraining:
    """Knobs of the benign model (small on purpose: it must run in microseconds)."""

    hidden: int = 32
    code: int = 8
    epochs: int = 60
    batch_size: int = 64
    quantile: float = 0.999  # of held-out benign scores: the threshold (at least)
    seed: int = 0
    # "minmax", or LOG_MINMAX (log1p first): on development seeds it halved the training
    # network's own unknown alarms but a site calibration then left 10x more on another site
    scaler: str = "minmax"
    # With windows_per_day (time steps), the threshold is also at least the edge benign windows
    # would cross about target_false_alarms_per_day times a day (site calibration's tail fit).
    target_false_alarms_per_day: float = 1.0
    windows_per_day: float | None = None
    groups: bool = True  # per feature group (with the columns given); False: one score


@dataclass(frozen=True)
class TrainedBenign:
    """The int8 model and its signed-section description."""

    tflite: bytes
    spec: OpenSetSpec
    validation_scores: npt.NDArray[np.float64]


def benign_windows(dataset: Dataset, window: int) -> npt.NDArray[np.float32]:
    """Raw windows (N, T, F) of consecutive benign steps within one group, in time order."""
    benign = dataset.benign
    if benign is None:
        raise OpenSetError("dataset: no benign/normal class to learn from")
    assert dataset.groups is not None
    ok = dataset.label_names == benign
    parts: list[npt.NDArray[np.float32]] = []
    start = 0
    n = len(dataset.x)
    for i in range(1, n + 1):
        if i == n or dataset.groups[i] != dataset.groups[start] or ok[i] != ok[start]:
            if ok[start] and i - start >= window:
                parts.append(sliding_windows(dataset.x[start:i], window))
            start = i
    if not parts:
        raise OpenSetError(f"dataset: no run of {window} benign steps")
    return np.concatenate(parts).astype(np.float32)


class StreamStarts(NamedTuple):
    """Raw start windows (N, T, F) and each one's number in its stream (0: the first)."""

    windows: npt.NDArray[np.float32]
    numbers: npt.NDArray[np.int64]


def stream_starts(dataset: Dataset, window: int, padding: str = "none") -> StreamStarts:
    """Each group's first ``START_WINDOWS`` windows, as the agent forms them (``padding`` as
    the bundle's), over the group's leading benign steps only."""
    benign = dataset.benign
    if benign is None:
        raise OpenSetError("dataset: no benign/normal class to learn from")
    assert dataset.groups is not None
    parts: list[npt.NDArray[np.float32]] = []
    ok = dataset.label_names == benign
    for group in dict.fromkeys(dataset.groups.tolist()):
        rows = np.nonzero(dataset.groups == group)[0]
        lead = int(np.argmin(ok[rows])) if not ok[rows].all() else len(rows)
        steps = dataset.x[rows[:lead]].astype(np.float32)
        if len(steps):
            parts.append(stream_windows(steps, window, padding)[:START_WINDOWS])
    if not parts:
        return StreamStarts(
            np.zeros((0, window, dataset.x.shape[1]), np.float32), np.zeros(0, np.int64)
        )
    numbers = np.concatenate([np.arange(len(part), dtype=np.int64) for part in parts])
    return StreamStarts(np.concatenate(parts), numbers)


def fit_scaler(windows: npt.NDArray[np.float32], kind: str = "minmax") -> BenignScaler:
    """Min-max over the benign training steps, of log1p(x) for ``LOG_MINMAX``.

    What lies beyond the range clips to the 0..1 edges. The log form is computed by the
    agent's own ``LogScaler`` (the manifest carries its range, the agent applies it).
    """
    rows = windows.reshape(-1, windows.shape[-1]).astype(np.float64)
    if kind == LOG_MINMAX:
        logs = np.log1p(np.maximum(rows, 0.0))
        return LogScaler(tuple(map(float, logs.min(axis=0))), tuple(map(float, logs.max(axis=0))))
    if kind != "minmax":
        raise OpenSetError(f"benign scaler: expected {LOG_MINMAX} or minmax, got {kind!r}")
    lo, hi = tuple(map(float, rows.min(axis=0))), tuple(map(float, rows.max(axis=0)))
    return Scaler("minmax", lo, hi, lo, hi)


def _build(width: int, options: BenignTraining) -> Any:
    import keras

    layers = keras.layers
    inputs = keras.Input((width,), name="summary")
    x = layers.Dense(options.hidden, activation="relu")(inputs)
    x = layers.Dense(options.code, activation="relu", name="code")(x)
    x = layers.Dense(options.hidden, activation="relu")(x)
    out = layers.Dense(width, activation="sigmoid", name="reconstruction")(x)
    return keras.Model(inputs, out, name="benign_autoencoder")


def _threshold(
    scores: npt.NDArray[np.float64], window: int, options: BenignTraining, share: int = 1
) -> float:
    """The signed edge: the held-out ``quantile``, raised to the tail fit at the target rate
    (a ``share`` of it: one of that many groups)."""
    from agent.calibration import tail_threshold

    edge = float(np.quantile(scores, options.quantile))
    if not options.windows_per_day:
        return edge
    # as site calibration counts it: one odd step stays in ``window`` windows, one alarm
    rate = options.target_false_alarms_per_day * window / options.windows_per_day
    exceed = min(rate, 0.5) / share
    logs = np.log(np.maximum(scores, 1e-12))
    return max(edge, float(np.exp(min(tail_threshold(logs, exceed), 700.0))))


def _scores(
    runtime: Model, x: npt.NDArray[np.float32], scale: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """The agent's score of window summaries: mean squared error over the error scale."""
    error = (runtime.predict(x).astype(np.float64) - x) ** 2 / scale
    return np.asarray(error.mean(axis=1), np.float64)


class Scoring(NamedTuple):
    """How the agent will score windows: its scaler, error scale and groups (None: one score)."""

    runtime: Model
    scaler: BenignScaler
    scale: npt.NDArray[np.float64]
    groups: Groups | None
    layout: Layout | None

    def group_scores(self, windows: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """Raw windows -> (N, groups) raw group scores (``agent.openset.BenignModel``'s)."""
        assert self.groups is not None
        assert self.layout is not None
        x = summarize(self.scaler.transform(windows))
        wide = summarize(wide_transform(self.scaler, windows, self.groups.range))
        error = (self.runtime.predict(x).astype(np.float64) - wide) ** 2 / self.scale
        return group_scores(error, self.layout)

    def scores(self, windows: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """Raw windows -> the one score the section's ``threshold`` is the edge of."""
        return _scores(self.runtime, summarize(self.scaler.transform(windows)), self.scale)

    def largest_ratios(self, windows: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """Raw windows -> the largest ratio of a group's score to its signed edge."""
        assert self.groups is not None
        edges = np.asarray([g.threshold for g in self.groups.groups], np.float64)
        return np.asarray((self.group_scores(windows) / edges).max(axis=1), np.float64)


def _groups(
    scoring: Scoring, held: npt.NDArray[np.float32], columns: tuple[str, ...], opts: BenignTraining
) -> Scoring:
    """``scoring`` with feature groups, each edge fitted on the held-out windows ``held``."""
    named = group_columns(columns)
    unfitted = Groups(RANGE, tuple(Group(n, cs, 1.0) for n, cs in named.items()))
    layout = unfitted.layout(columns)
    scores = scoring._replace(groups=unfitted, layout=layout).group_scores(held)
    fitted = tuple(
        Group(
            g.name, g.columns, max(1.0, _threshold(scores[:, j], held.shape[1], opts, len(named)))
        )
        for j, g in enumerate(unfitted.groups)
    )
    return scoring._replace(groups=Groups(RANGE, fitted), layout=layout)


# (Keras model, representative inputs) -> full-int8 TFLite bytes. The converter belongs to
# ``converters``, which training may not import: the caller hands it in.
ToInt8 = Callable[[Any, npt.NDArray[np.float32]], bytes]


def _start_edge(
    scores: npt.NDArray[np.float64], numbers: npt.NDArray[np.int64], threshold: float, window: int
) -> tuple[float, int] | None:
    """The stream start's edge and how many first windows it covers, None: not needed.

    The edge is ``START_MARGIN`` x the starts' highest score, when above ``threshold``. It
    covers the windows up to the last one whose score that margin would lift over
    ``threshold``, and ``window`` more (a boot a few steps later), at most ``START_WINDOWS``:
    an unseen attack that starts with the stream is judged by the steady edge again soon after.
    """
    finite = np.isfinite(scores)
    if not finite.any():
        return None
    edge = START_MARGIN * float(scores[finite].max())
    if not edge > threshold:
        return None
    near = numbers[finite & (START_MARGIN * np.where(finite, scores, 0.0) > threshold)]
    covered = min(int(near.max()) + window, START_WINDOWS)
    return min(edge, MAX_START_RATIO * threshold), covered


def train_benign(
    windows: npt.NDArray[np.float32],
    to_int8: ToInt8,
    options: BenignTraining | None = None,
    starts: StreamStarts | None = None,
    columns: tuple[str, ...] = (),
) -> TrainedBenign:
    """Fit, convert to int8, and describe the benign model of raw benign windows (N, T, F).

    ``starts`` (``stream_starts``) set the stream-start edge; they are scored, not trained on
    beyond what ``windows`` already hold. With the windows' ``columns`` (and
    ``options.groups``) the model is scored per feature group.
    """
    import keras

    from agent.quiet import quiet_tensorflow

    options = options or BenignTraining()
    if len(windows) < MIN_WINDOWS:
        raise OpenSetError(f"dataset: {len(windows)} benign windows, need {MIN_WINDOWS}")
    quiet_tensorflow()
    keras.utils.set_random_seed(options.seed)
    cut = int(len(windows) * TRAIN_FRACTION)
    scaler = fit_scaler(windows[:cut], options.scaler)
    train = summarize(scaler.transform(windows[:cut]))
    held = summarize(scaler.transform(windows[cut:]))
    model = _build(train.shape[1], options)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="mse")
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=8, restore_best_weights=True)
    model.fit(
        train,
        train,
        validation_data=(held, held),
        epochs=options.epochs,
        batch_size=options.batch_size,
        callbacks=[stop],
        verbose=0,
    )
    tflite = to_int8(model, train[:500])
    runtime = Model(tflite)
    error = (runtime.predict(train).astype(np.float64) - train) ** 2
    scale = np.maximum(error.mean(axis=0), MIN_ERROR_SCALE)
    scoring = Scoring(runtime, scaler, scale, None, None)
    if options.groups and columns:
        scoring = _groups(scoring, windows[cut:], columns, options)
    held_scores = scoring.scores(windows[cut:])
    threshold = _threshold(held_scores, windows.shape[1], options)
    start_scores, numbers = np.zeros(0), np.zeros(0, np.int64)
    if starts is not None and len(starts.windows):
        start_scores = scoring.scores(starts.windows)
        numbers = starts.numbers
    start = _start_edge(start_scores, numbers, threshold, windows.shape[1])
    if scoring.groups is not None and starts is not None and len(starts.windows):
        # the largest group ratio's own start edge (its steady edge is 1), for after a site
        # calibration brings group edges
        ratios = scoring.largest_ratios(starts.windows)
        edge = _start_edge(ratios, numbers, 1.0, windows.shape[1])
        if edge is not None:
            groups = replace(scoring.groups, start_threshold=edge[0], start_windows=edge[1])
            scoring = scoring._replace(groups=groups)
    golden_in = held[:GOLDEN_COUNT].astype(np.float32)
    out_q = runtime.output_quantization
    spec = OpenSetSpec(
        model_sha256=hashlib.sha256(tflite).hexdigest(),
        model_size=len(tflite),
        scaler=scaler,
        error_scale=tuple(float(v) for v in scale),
        threshold=threshold,
        golden_inputs=golden_in,
        golden_outputs=runtime.predict(golden_in),
        golden_atol=2.0 * out_q.scale if out_q is not None else 1e-3,
        calibration={
            "method": "quantile of held-out benign window scores"
            + (", at least the tail fit at the target" if options.windows_per_day else ""),
            "quantile": options.quantile,
            "scaler": scaler.kind,
            "target_false_alarms_per_day": options.target_false_alarms_per_day,
            "windows_per_day": options.windows_per_day,
            "n_benign": len(held),
            "n_train": cut,
            "start": f"{START_MARGIN:g} x the highest score of the streams' first windows",
            "n_start": len(start_scores),
            "start_max_score": float(start_scores.max()) if len(start_scores) else None,
            "groups": "per group: its largest dimension's error against the window scaled to "
            f"{RANGE:g} x the benign range, edge at the target / groups, at least 1"
            if scoring.groups
            else None,
        },
        start_threshold=start[0] if start is not None else None,
        start_windows=start[1] if start is not None else None,
        groups=scoring.groups,
    )
    logger.info(
        "benign model: %d bytes, %d training / %d held-out windows, threshold %.4g, start %s",
        len(tflite),
        cut,
        len(held),
        threshold,
        f"{start[0]:.4g} over {start[1]} windows" if start is not None else "the same",
    )
    return TrainedBenign(tflite, spec, held_scores)
