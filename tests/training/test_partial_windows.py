"""Padded-copy augmentation: the gateway's partial first windows, added to the training split."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from agent.features.steps import sliding_windows, stream_windows
from training.config import ConfigError, TrainConfig, load_config
from training.datasets.base import Dataset
from training.partial import HORIZON_WINDOWS, augment, pad_first
from training.train import Prepared, prepare

WINDOW = 4


def _dataset(seed: int = 0) -> Dataset:
    """Two recordings: benign, then an attack run mid-recording; a second, attack only."""
    rng = np.random.default_rng(seed)
    labels = ["benign"] * 60 + ["flood"] * 40 + ["flood"] * 50
    groups = [0] * 100 + [1] * 50
    x = rng.random((len(labels), 3)).astype(np.float32) + 1.0
    return Dataset(
        "captures",
        "traffic",
        ["a", "b", "c"],
        x,
        np.array(labels),
        sequential=True,
        groups=np.array(groups, np.int64),
        group_names=["mixed", "flood"],
    )


def _config(tmp_path: Path, **values: object) -> TrainConfig:
    base = TrainConfig(
        "captures", str(tmp_path), "cnn", str(tmp_path / "out"), window=WINDOW, padding="zeros"
    )
    return dataclasses.replace(base, split="time-block", **values)  # type: ignore[arg-type]


def _prepared(tmp_path: Path, share: float) -> Prepared:
    return prepare(_config(tmp_path, partial_windows=share), _dataset())


def test_a_padded_copy_is_the_window_the_agent_scores_after_a_later_start() -> None:
    rng = np.random.default_rng(1)
    steps = rng.random((WINDOW + 3, 5)).astype(np.float32)
    fill = rng.random(5).astype(np.float32)
    for k in range(1, WINDOW):
        # a stream seen from k steps earlier: its full window ending at steps[WINDOW - k - 1]
        earlier = np.concatenate((rng.random((k, 5)).astype(np.float32), steps), axis=0)
        full = sliding_windows(earlier, WINDOW)[0]
        # the agent started at steps[0] pads k rows in front (stream_windows = its model slot)
        agent = stream_windows(steps, WINDOW, "zeros", fill)[WINDOW - k - 1]
        assert np.array_equal(pad_first(full, k, fill), agent)
    with pytest.raises(ValueError, match="k must be"):
        pad_first(steps[:WINDOW], WINDOW, fill)


def test_copies_are_a_share_of_the_windows_near_a_run_start() -> None:
    x = np.ones((200, WINDOW, 2), np.float32)
    position = np.arange(200, dtype=np.int64) % 50  # four runs of 50 windows
    fill = np.zeros(2, np.float32)
    near = int((position < HORIZON_WINDOWS * WINDOW).sum())
    for share in (0.0, 0.25, 0.5, 1.0):
        chosen, copies, account = augment(x, position, share, fill, seed=3)
        assert account.candidates == near
        assert account.copies == len(chosen) == len(copies) == round(share * near)
        assert (position[chosen] < HORIZON_WINDOWS * WINDOW).all()
        assert len(set(chosen.tolist())) == len(chosen)  # one copy per chosen window
        # every copy starts with at least one pad row and keeps at least its last step
        assert (copies[:, 0] == 0).all()
        assert (copies[:, -1] == 1).all()
    again, _, _ = augment(x, position, 0.5, fill, seed=3)
    assert np.array_equal(again, augment(x, position, 0.5, fill, seed=3)[0])


def test_copies_keep_their_original_label_and_position(tmp_path: Path) -> None:
    plain, padded = _prepared(tmp_path, 0.0), _prepared(tmp_path, 0.5)
    n = len(plain.y["train"])
    extra = padded.partial["copies"]
    assert extra > 0
    assert len(padded.y["train"]) == n + extra
    assert np.array_equal(padded.x["train"][:n], plain.x["train"])
    fill = padded.scaler.transform(np.zeros((1, 3), np.float32))[0]
    for i in range(n, n + extra):
        copy = padded.x["train"][i, :, :, 0]
        pads = int(np.all(copy == fill, axis=1).cumprod().sum())
        # the original is the plain window with the same steps after the padded ones
        same = np.all(plain.x["train"][:, pads:, :, 0] == copy[pads:], axis=(1, 2))
        originals = np.flatnonzero(same)
        assert len(originals) >= 1
        assert padded.y["train"][i] in plain.y["train"][originals]
        assert padded.position["train"][i] in plain.position["train"][originals]
    # the other splits and the counts are the real windows only
    for name in ("val", "test"):
        assert np.array_equal(padded.x[name], plain.x[name])
    assert padded.counts == plain.counts


def test_default_off_gives_identical_training_data(tmp_path: Path) -> None:
    default = prepare(_config(tmp_path), _dataset())
    off = _prepared(tmp_path, 0.0)
    assert default.partial == {}
    assert off.partial == {}
    for name in ("train", "val", "test"):
        assert np.array_equal(default.x[name], off.x[name])
        assert np.array_equal(default.y[name], off.y[name])


def test_bad_partial_windows_name_the_key(tmp_path: Path) -> None:
    for share in (-0.1, 1.5, "half", True):
        with pytest.raises(ConfigError, match=r"train\.partial_windows"):
            _config(tmp_path, partial_windows=share)
    with pytest.raises(ConfigError, match="needs padding"):
        _config(tmp_path, partial_windows=0.5, padding="none")
    with pytest.raises(ConfigError, match="in-memory"):
        _config(tmp_path, partial_windows=0.5, stream=True)
    config = load_config(
        None,
        {"dataset": "captures", "path": ".", "model": "cnn", "out": "o", "padding": "zeros"}
        | {"partial_windows": 0.25},
    )
    assert config.partial_windows == 0.25


def test_the_share_and_copies_are_recorded_for_the_bundle(tmp_path: Path) -> None:
    from converters.bundle import EXTRA_KEYS
    from training.train import preprocess_state

    config = _config(tmp_path, partial_windows=0.5)
    state = preprocess_state(config, prepare(config, _dataset()), {}, {})
    recorded = state["partial_windows"]
    assert recorded["share"] == 0.5
    assert recorded["copies"] > 0
    assert recorded["horizon_steps"] == HORIZON_WINDOWS * WINDOW
    off = preprocess_state(_config(tmp_path), prepare(_config(tmp_path), _dataset()), {}, {})
    assert off["partial_windows"] == {"share": 0.0, "copies": 0}
    assert "partial_windows" in EXTRA_KEYS  # carried into the manifest's extra by the packer


def test_the_flag_reaches_the_config_key(tmp_path: Path) -> None:
    """``--partial-windows`` is the ``partial_windows`` key (the exit-2 path is shared)."""
    import argparse
    from dataclasses import fields

    from training.cli_train import configure

    parser = argparse.ArgumentParser()
    configure(parser)
    flags = ["--dataset", "captures", "--path", str(tmp_path), "--model", "cnn", "--out", "o"]
    args = parser.parse_args([*flags, "--padding", "zeros", "--partial-windows", "2"])
    overrides = {
        f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)
    }
    with pytest.raises(ConfigError, match=r"train\.partial_windows: must be in \[0, 1\], got 2"):
        load_config(None, overrides)
    args = parser.parse_args([*flags, "--padding", "zeros", "--partial-windows", "0.5"])
    overrides = {
        f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)
    }
    assert load_config(None, overrides).partial_windows == 0.5


def test_the_share_is_chosen_by_target_then_alarms_then_packets_then_size() -> None:
    from benchmarks.partial_windows import _rank

    def result(within: int, alarms: int, packets: int) -> dict[str, object]:
        hit = {"within_target": True, "detected": True, "packets_to_alarm": packets}
        late = {"within_target": False, "detected": True, "packets_to_alarm": packets}
        return {"attacks": [hit] * within + [late] * (3 - within), "alarms": alarms}

    def best(results: dict[float, list[dict[str, object]]]) -> float:
        return max(results, key=lambda share: _rank(results[share], share))

    assert best({0.0: [result(2, 0, 20)], 1.0: [result(3, 5, 90)]}) == 1.0
    assert best({0.0: [result(3, 1, 20)], 1.0: [result(3, 0, 90)]}) == 1.0
    assert best({0.0: [result(3, 0, 60)], 0.5: [result(3, 0, 40)]}) == 0.5
    assert best({0.0: [result(3, 0, 40)], 0.5: [result(3, 0, 40)]}) == 0.0
