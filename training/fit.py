"""Fitting the Keras models: sample weights, what early stopping watches, and for how long.

Early stopping watches validation macro-F1 (the figure the report leads with) when the
validation split is large enough to measure it, and the validation loss when it is small:
with a handful of windows of some class, one window flips that class's F1 by a large step
and training stops on noise (one seed stopped after 5 epochs, the next after 40). "Small"
means a class present in training has fewer than ``SMALL_VALIDATION`` validation windows;
the loss averages over every window and moves smoothly. Neither stops before ``min_epochs``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from training.config import TrainConfig
from training.preprocess import class_weights

if TYPE_CHECKING:
    from training.train import Prepared

logger = logging.getLogger(__name__)

MIN_CALIBRATION_NORMALS = 20
SMALL_VALIDATION = 30  # validation windows per class below which macro-F1 is too noisy to watch


def training_callbacks(config: TrainConfig, monitor: str) -> list[Any]:
    """Early stopping on ``monitor`` (a loss, or ``val_macro_f1`` which must rise)."""
    import keras

    from training.progress import epoch_progress

    stop = keras.callbacks.EarlyStopping(
        monitor=monitor,
        mode="max" if monitor.endswith("macro_f1") else "min",
        patience=config.patience,
        restore_best_weights=True,
        start_from_epoch=min(config.min_epochs, config.epochs) - 1,
    )
    return [stop, epoch_progress(config.epochs)] if config.verbose else [stop]


def small_validation(y_train: npt.NDArray[np.int64], y_val: npt.NDArray[np.int64]) -> bool:
    """True when a class the model learns has fewer than SMALL_VALIDATION validation windows."""
    present = np.unique(y_train)
    counts = np.bincount(y_val, minlength=int(present.max()) + 1 if len(present) else 0)
    return bool(len(present)) and int(counts[present].min()) < SMALL_VALIDATION


def val_macro_f1(prepared: Prepared) -> Any:
    """A callback adding ``val_macro_f1`` to each epoch's logs (before early stopping reads it).

    The loss keeps falling on confidently right majority rows while small classes trade places;
    the score the report leads with is macro-F1, so the kept weights are its best epoch's.
    """
    import keras
    from sklearn.metrics import f1_score

    x, y = prepared.x["val"], prepared.y["val"]

    class ValMacroF1(keras.callbacks.Callback):  # type: ignore[misc]
        """Macro-F1 of the argmax on the validation split."""

        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            predicted = self.model.predict(x, batch_size=1024, verbose=0).argmax(axis=1)
            if logs is not None:
                logs["val_macro_f1"] = float(
                    f1_score(y, predicted, average="macro", zero_division=0)
                )

    return ValMacroF1()


def tempered_class_weights(config: TrainConfig, prepared: Prepared) -> npt.NDArray[np.float64]:
    """Each class's balanced weight to the power ``class_weight_power``."""
    by_class = class_weights(prepared.y["train"], len(prepared.labels))
    balanced = np.array([by_class[c] for c in range(len(prepared.labels))], np.float64)
    # a power below 1 tempers the balance: with 8 rows of a class among 17,000 the balanced
    # weight (x440) makes the net call that class on anything near it (recall 1, precision 0.3)
    tempered: npt.NDArray[np.float64] = balanced**config.class_weight_power
    return tempered


def sample_weights(config: TrainConfig, prepared: Prepared) -> npt.NDArray[np.float64]:
    """Balanced class weights (to ``class_weight_power``) per window, x``onset_weight`` on onsets.

    An onset window ends in one of an attack run's first ``onset_steps`` steps and so still
    holds mostly the steps before it; calling it is what detects within 2 steps, yet there is
    one such window per run against a run's length of whole-attack windows.
    """
    y = prepared.y["train"]
    weights = tempered_class_weights(config, prepared)[y]
    position = prepared.position["train"]
    onset = (position >= 0) & (position < config.onset_steps)
    if prepared.benign is not None:
        onset &= y != prepared.benign
    logger.info("onset windows in training: %d (weight x%g)", int(onset.sum()), config.onset_weight)
    weights[onset] *= config.onset_weight
    return weights


def stop_monitor(prepared: Prepared) -> str:
    """What early stopping watches: validation macro-F1, its loss when small, else the loss."""
    y_train, y_val = prepared.y["train"], prepared.y["val"]
    if len(y_val) == 0:
        return "loss"
    if small_validation(y_train, y_val):
        logger.info(
            "validation split is small (a class under %d windows): stopping on its loss",
            SMALL_VALIDATION,
        )
        return "val_loss"
    return "val_macro_f1"


def fit_classifier(config: TrainConfig, prepared: Prepared, model: Any) -> dict[str, list[float]]:
    """Fit a softmax classifier with class and onset weights, stopping on validation figures.

    With ``distill`` > 0 the targets mix the one-hot label with a RandomForest's out-of-fold
    class probabilities (a tree-ensemble teacher's soft labels; out-of-fold so the teacher's
    probabilities on a row come from trees that never saw it); ``distill_augment`` adds
    teacher-labelled new rows.
    """
    import keras

    from training.distill import augmented, soft_targets

    y = prepared.y["train"]
    n_classes = len(prepared.labels)
    targets = soft_targets(config, prepared)
    x_fit = prepared.x["train"]
    y_fit = targets if targets is not None else np.eye(n_classes, dtype=np.float32)[y]
    weights = sample_weights(config, prepared)
    if config.distill_augment > 0:
        x_new, y_new, w_new = augmented(config, prepared, tempered_class_weights(config, prepared))
        x_fit, y_fit = np.concatenate([x_fit, x_new]), np.concatenate([y_fit, y_new])
        weights = np.concatenate([weights, w_new])
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss=keras.losses.CategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    has_val = len(prepared.y["val"]) > 0
    monitor = stop_monitor(prepared)
    history = model.fit(
        x_fit,
        y_fit,
        shuffle=True,
        validation_data=(prepared.x["val"], np.eye(n_classes, dtype=np.float32)[prepared.y["val"]])
        if has_val
        else None,
        epochs=config.epochs,
        batch_size=config.batch_size,
        sample_weight=weights,
        callbacks=[val_macro_f1(prepared), *training_callbacks(config, monitor)]
        if has_val
        else training_callbacks(config, monitor),
        verbose=0,
    )
    return {k: [float(v) for v in vals] for k, vals in history.history.items()}


def fit_on_normals(
    config: TrainConfig,
    part: Any,
    prepared: Prepared,
    targets: Callable[[npt.NDArray[np.float32]], Any],
) -> tuple[dict[str, list[float]], npt.NDArray[np.float32], bool]:
    """Fit a compiled model of normal windows (an autoencoder, a forecaster) on the normal
    training windows; its curves, the normals to calibrate on and whether they were held out.

    Calibrating on training normals would set thresholds on windows the model has learned, so
    held-out ones are used whenever there are enough of them, and the fallback is logged.
    """
    normal_train = prepared.x["train"][prepared.y["train"] == 0]
    normal_val = prepared.x["val"][prepared.y["val"] == 0]
    has_val = len(normal_val) > 0
    history = part.fit(
        normal_train,
        targets(normal_train),
        validation_data=(normal_val, targets(normal_val)) if has_val else None,
        epochs=config.epochs,
        batch_size=config.batch_size,
        callbacks=training_callbacks(config, "val_loss" if has_val else "loss"),
        verbose=0,
    )
    held_out = len(normal_val) >= MIN_CALIBRATION_NORMALS
    if not held_out:
        logger.warning(
            "only %d held-out normal windows: calibrating on training normals", len(normal_val)
        )
    curves = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    return curves, (normal_val if held_out else normal_train), held_out


def fit_anomaly(
    config: TrainConfig, prepared: Prepared, model: Any
) -> tuple[dict[str, list[float]], dict[str, float], dict[str, Any]]:
    """Fit the autoencoder on normal windows only; threshold at the target FPR on held-out ones."""
    import keras

    from training.models import trainable_part

    auto = trainable_part(model)
    auto.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss="mse")
    curves, calibration_set, held_out = fit_on_normals(config, auto, prepared, lambda x: x)
    scores = model.predict(calibration_set, batch_size=256, verbose=0).reshape(-1)
    threshold = float(np.quantile(scores, 1.0 - config.target_fpr))
    calibration = {
        "method": "quantile of normal scores" + ("" if held_out else " (TRAINING normals)"),
        "target_fpr": config.target_fpr,
        "n_normal": len(calibration_set),
        "split": "val" if held_out else "train",
    }
    return curves, {"anomaly": threshold}, calibration
