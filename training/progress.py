"""Per-epoch progress for training: a bar on a terminal, one log line per epoch otherwise.

Keras' own bar is off (``verbose=0``: it floods a log file with carriage returns); this
callback draws a tqdm bar over the epochs when stderr is a terminal, with the latest metrics as
its postfix, and logs a plain line per epoch when it is not (a pipe, CI, journald), so a long
run is never silent. ``iotids -q`` turns both off.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

logger = logging.getLogger(__name__)


def _shown(logs: dict[str, float] | None) -> dict[str, str]:
    return {k: f"{v:.4f}" for k, v in (logs or {}).items()}


def on_terminal(stream: TextIO) -> bool:
    """Whether ``stream`` is an interactive terminal (a bar would render, not pile up)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def epoch_progress(epochs: int, stream: TextIO | None = None) -> Any:
    """A Keras callback reporting each epoch (bar on a terminal, a log line otherwise)."""
    import keras

    out = stream if stream is not None else sys.stderr

    class EpochProgress(keras.callbacks.Callback):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self._bar: Any = None

        def on_train_begin(self, logs: dict[str, float] | None = None) -> None:
            if on_terminal(out):
                from tqdm import tqdm

                self._bar = tqdm(total=epochs, desc="training", unit="epoch", file=out)

        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            if self._bar is not None:
                self._bar.set_postfix(_shown(logs), refresh=False)
                self._bar.update(1)
            else:
                shown = " ".join(f"{k} {v}" for k, v in _shown(logs).items())
                logger.info("epoch %d/%d: %s", epoch + 1, epochs, shown)

        def on_train_end(self, logs: dict[str, float] | None = None) -> None:
            if self._bar is not None:
                self._bar.close()  # early stopping: the bar ends where training did
                self._bar = None

    return EpochProgress()
