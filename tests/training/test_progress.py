"""Per-epoch progress: a bar on a terminal, one log line per epoch otherwise."""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest

pytestmark = pytest.mark.tf


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _fit(callback: object, epochs: int = 3) -> None:
    from agent.quiet import quiet_tensorflow

    quiet_tensorflow()
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.zeros((8, 2), np.float32)
    model.fit(x, x[:, :1], epochs=epochs, verbose=0, callbacks=[callback])


def test_a_terminal_gets_a_bar_over_the_epochs(caplog: pytest.LogCaptureFixture) -> None:
    from training.progress import epoch_progress

    terminal = _Terminal()
    with caplog.at_level(logging.INFO, logger="agent.progress"):
        _fit(epoch_progress(3, terminal))
    drawn = terminal.getvalue()
    assert drawn.startswith("\rtraining: [")
    assert "3/3 epochs" in drawn.split("\r")[-1]
    assert "loss " in drawn


def test_a_pipe_gets_one_line_per_epoch(caplog: pytest.LogCaptureFixture) -> None:
    from training.progress import epoch_progress

    pipe = io.StringIO()
    with caplog.at_level(logging.INFO, logger="agent.progress"):
        _fit(epoch_progress(3, pipe))
    lines = [r.getMessage() for r in caplog.records if r.name == "agent.progress"]
    assert [line.split(", ")[0] for line in lines] == [
        "training:  33% 1/3 epochs",
        "training:  67% 2/3 epochs",
        "training: 100% 3/3 epochs",
    ]
    assert "epochs" in lines[0]
    assert " loss " in lines[0]
    assert pipe.getvalue() == ""  # no bar, no carriage returns in a log
