"""Per-epoch progress: a bar on a terminal, one log line per epoch otherwise."""

from __future__ import annotations

import io
import logging
import os
import pty
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.tf
REPO = Path(__file__).resolve().parents[2]


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


def _read_until_closed(fd: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed its end of the pty
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
def test_iotids_train_draws_the_bar_on_a_real_terminal(tmp_path: Path) -> None:
    """The command as a user runs it, its stderr a pty of 0 columns (as under ``script``)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("COLUMNS", None)
    iotids = [sys.executable, "-m", "agent.cli"]
    synth = [*iotids, "synth", "traffic", "-q", "-o", str(tmp_path / "syn"), "--duration", "40"]
    subprocess.run(synth, check=True, env=env, timeout=120)
    leader, follower = pty.openpty()
    train = [
        *iotids, "train", "--dataset", "synthetic", "--path", str(tmp_path / "syn"),
        "--model", "dnn", "--epochs", "2", "--min-epochs", "1", "-o", str(tmp_path / "m"),
    ]  # fmt: skip
    child = subprocess.Popen(train, stderr=follower, stdout=follower, env=env)
    os.close(follower)
    drawn = _read_until_closed(leader)
    os.close(leader)
    assert child.wait(timeout=300) == 0, drawn[-2000:]
    bar = [part for part in drawn.split("\r") if part.startswith("training: [")]
    assert bar, drawn[-2000:]
    assert "2/2 epochs" in bar[-1]
