"""Per-epoch progress for training: a bar on a terminal, one log line per epoch otherwise.

Keras' own bar is off (``verbose=0``: it floods a log file with carriage returns); this
callback drives the one renderer every ``iotids`` job uses (agent.progress): a redrawn line
over the epochs with the latest metrics on a terminal, and a plain line per epoch when stderr
is not one (a pipe, CI, journald), so a long run is never silent. ``iotids -q`` turns both off.
"""

from __future__ import annotations

from typing import Any, TextIO

from agent.progress import Progress


def shown(logs: dict[str, float] | None) -> str:
    """``loss 0.1234 val_loss 0.2345 ...``: the epoch's metrics, four decimals each, the losses
    first (a narrow terminal cuts the line's end)."""
    order = sorted(logs or {}, key=lambda k: (k not in ("loss", "val_loss"), k))
    return " ".join(f"{k} {(logs or {})[k]:.4f}" for k in order)


def epoch_progress(epochs: int, stream: TextIO | None = None) -> Any:
    """A Keras callback reporting each epoch (bar on a terminal, a log line otherwise)."""
    import keras

    class EpochProgress(keras.callbacks.Callback):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self._bar: Progress | None = None

        def on_train_begin(self, logs: dict[str, float] | None = None) -> None:
            # every_s=0: in a log, each epoch is its own line however fast it went
            self._bar = Progress("training", epochs, "epochs", stream=stream, every_s=0.0)

        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            if self._bar is not None:
                self._bar.update(epoch + 1, note=shown(logs))

        def on_train_end(self, logs: dict[str, float] | None = None) -> None:
            if self._bar is not None:
                self._bar.close()  # early stopping: the bar ends where training did
                self._bar = None

    return EpochProgress()
