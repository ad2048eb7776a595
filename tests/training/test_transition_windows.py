"""Transition copies: an attack's first windows as a gateway sees them after benign traffic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.training.test_partial_windows import WINDOW, _config, _dataset
from training.config import ConfigError
from training.partial import HORIZON_WINDOWS, transitions
from training.train import prepare


def test_a_copy_is_benign_steps_then_the_attack_window_s_last_ones() -> None:
    benign, attack = np.zeros((30, WINDOW, 2), np.float32), np.ones((30, WINDOW, 2), np.float32)
    benign[:, :, 0] = np.arange(WINDOW)  # a benign window's steps are told apart by position
    x = np.concatenate((benign, attack))
    y = np.array([0] * 30 + [1] * 30, np.int64)
    position = np.concatenate((np.arange(30), np.arange(30))).astype(np.int64)
    chosen, copies = transitions(x, position, y, benign=0, share=1.0, seed=1)
    near = np.flatnonzero((y == 1) & (position < HORIZON_WINDOWS * WINDOW))
    assert np.array_equal(chosen, near)  # attack windows only, near their run's start
    for copy in copies:
        k = int((copy[:, 1] == 0).sum())  # benign steps first
        assert 1 <= k < WINDOW
        assert (copy[k:] == 1).all()  # then the attack window's last steps
        assert np.array_equal(copy[:k, 0], np.arange(WINDOW - k, WINDOW))  # a benign window's end
    assert len(transitions(x, position, y, 0, 0.5, 1)[0]) == round(0.5 * len(near))
    assert len(transitions(x, position, np.ones_like(y), 0, 1.0, 1)[0]) == 0  # no benign source


def test_the_training_split_gets_them_labelled_as_their_attack(tmp_path: Path) -> None:
    plain = prepare(_config(tmp_path), _dataset())
    mixed = prepare(_config(tmp_path, transition_windows=1.0), _dataset())
    extra = mixed.partial["transitions"]
    assert extra > 0
    assert mixed.partial["copies"] == 0
    n = len(plain.y["train"])
    assert len(mixed.y["train"]) == n + extra
    benign = plain.labels.index("benign")
    assert (mixed.y["train"][n:] != benign).all()
    for name in ("val", "test"):
        assert np.array_equal(mixed.x[name], plain.x[name])


def test_bad_transition_windows_name_the_key(tmp_path: Path) -> None:
    for share in (-0.1, 1.5, "half", True):
        with pytest.raises(ConfigError, match=r"train\.transition_windows"):
            _config(tmp_path, transition_windows=share)
    with pytest.raises(ConfigError, match="in-memory"):
        _config(tmp_path, transition_windows=0.5, stream=True)
