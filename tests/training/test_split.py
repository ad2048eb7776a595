"""Honest splits: time blocks never share a step, duplicates never cross, train-only scaling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training import split
from training.config import ConfigError, TrainConfig
from training.datasets import load
from training.preprocess import Scaler, class_weights
from training.train import make_split


def test_ton_iot_time_block_split_leaves_no_block_in_two_splits(datasets: Path) -> None:
    ds = load("ton-iot", str(datasets / "ton_iot_telemetry" / "Train_Test_IoT_Thermostat.csv"))
    assert ds.groups is not None
    s = split.time_block_split(ds.groups, ds.label_names)
    owner = np.full(len(ds.x), -1)
    for k, name in enumerate(split.SPLITS):
        for start, end in s.ranges[name]:
            assert (owner[start:end] == -1).all(), "a row is in two splits"
            owner[start:end] = k
            assert len(set(ds.label_names[start:end].tolist())) == 1  # one class run
    assert (owner >= 0).all()
    # each run is cut chronologically: train piece, then val, then test
    for start, end in split.runs(ds.groups, ds.label_names):
        assert (np.diff(owner[start:end]) >= 0).all()
    # windows come from inside one piece only, labelled by their last step
    y = np.arange(len(ds.x), dtype=np.int64)
    w, labels, last = split.windows(ds.x, y, s.ranges["test"], 8)
    np.testing.assert_array_equal(labels, last)
    first = last - 7
    piece_of_first = np.searchsorted([a for a, _ in s.ranges["test"]], first, side="right") - 1
    piece_of_last = np.searchsorted([a for a, _ in s.ranges["test"]], last, side="right") - 1
    np.testing.assert_array_equal(piece_of_first, piece_of_last)
    ends = np.array([b for _, b in s.ranges["test"]])
    assert (last < ends[piece_of_last]).all()
    np.testing.assert_array_equal(w[:, -1, :], ds.x[last])
    np.testing.assert_array_equal(w[:, 0, :], ds.x[first])


def test_block_split_deals_contiguous_blocks_per_group() -> None:
    groups = np.repeat(np.arange(2, dtype=np.int64), 100)
    s = split.block_split(groups, n_blocks=10, seed=3)
    assert [len(s.ranges[n]) for n in split.SPLITS] == [14, 2, 4]
    covered = np.sort(np.concatenate([s.rows[n] for n in split.SPLITS]))
    np.testing.assert_array_equal(covered, np.arange(200))  # every row once
    for name in split.SPLITS:
        for start, end in s.ranges[name]:
            assert groups[start] == groups[end - 1]  # a block never spans two files


def test_time_ordered_data_refuses_a_shuffled_split(datasets: Path) -> None:
    ds = load("n-baiot", str(datasets / "n_baiot_sample"))
    config = TrainConfig("n-baiot", "p", "gru", "o", split="stratified")
    with pytest.raises(ConfigError, match="shuffled"):
        make_split(config, ds)


def test_duplicates_within_and_across_splits_are_removed() -> None:
    rng = np.random.default_rng(0)
    base = rng.random((200, 3)).astype(np.float32)
    x = np.concatenate([base, base[:30]])  # 30 exact duplicates (same label)
    labels = np.array(["a", "b"] * 100 + ["a", "b"] * 15, np.str_)
    x[100] = x[101]  # same features, different label: survives dedupe, must not cross splits
    s = split.stratified_split(x, labels, seed=1)
    assert s.removed["duplicate_rows"] == 30
    keys = {name: {x[i].tobytes() for i in s.rows[name]} for name in split.SPLITS}
    assert not keys["train"] & keys["test"]
    assert not keys["train"] & keys["val"]
    total = sum(len(r) for r in s.rows.values())
    assert total == 200 - s.removed["cross_split_val"] - s.removed["cross_split_test"]


def test_scaler_is_fit_on_train_and_clips_test_values() -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(0, 1, (5000, 2)).astype(np.float32)
    train[:, 1] = 7.0  # constant column -> 0
    scaler = Scaler.fit(train)
    assert scaler.clip_high[0] < train[:, 0].max()  # quantile clipping, not the max
    test = np.array([[100.0, 7.0], [-100.0, 9.0]], np.float32)
    raw = (test[:, 0] - scaler.min[0]) / (scaler.max[0] - scaler.min[0])
    assert raw[0] > 1
    assert raw[1] < 0
    scaled = scaler.transform(test)
    np.testing.assert_array_equal(scaled, [[1.0, 0.0], [0.0, 0.0]])  # ...clipped on the device
    again = Scaler.from_dict(scaler.to_dict())
    np.testing.assert_array_equal(again.transform(train), scaler.transform(train))
    assert scaler.transform(train).min() >= 0
    assert scaler.transform(train).max() <= 1


def test_class_weights_balance_the_classes() -> None:
    weights = class_weights(np.array([0] * 90 + [1] * 10, np.int64), 3)
    assert weights[0] * 90 == pytest.approx(weights[1] * 10)
    assert weights[2] == 0.0


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    from training.config import load_config

    toml = tmp_path / "t.toml"
    toml.write_text(
        '[train]\ndataset = "nsl-kdd"\npath = "p"\nmodel = "dnn"\nout = "o"\nepochs = 0\n'
    )
    with pytest.raises(ConfigError, match=r"train\.epochs"):
        load_config(toml, {})
    with pytest.raises(ConfigError, match=r"unknown keys.*epoch_count"):
        load_config(toml, {"epoch_count": 3})
    assert load_config(toml, {"epochs": 2}).epochs == 2


def test_fold_split_scores_every_row_out_of_fold_once() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((230, 3)).astype(np.float32)
    labels = np.array(["a"] * 200 + ["b"] * 19 + ["rare"] * 11, np.str_)
    x[210] = x[0]  # same features, other label: a row that may not cross splits
    x[5] = x[4]
    labels[5] = labels[4]  # an exact duplicate: dropped before folding
    tested = []
    for fold in range(5):
        s = split.fold_split(x, labels, fold, folds=5, seed=3)
        assert s.removed["duplicate_rows"] == 1
        sets = {name: set(s.rows[name].tolist()) for name in split.SPLITS}
        assert not sets["train"] & sets["val"]
        assert not sets["train"] & sets["test"]
        assert not sets["val"] & sets["test"]
        keys = {name: {x[i].tobytes() for i in s.rows[name]} for name in split.SPLITS}
        assert not keys["train"] & (keys["val"] | keys["test"])
        # stratified: the 11-row class has 2 or 3 test rows in every fold, and a validation row
        assert {int((labels[s.rows["test"]] == "rare").sum())} <= {2, 3}
        assert (labels[s.rows["val"]] == "rare").sum() >= 1
        tested.append(s.rows["test"])
    scored = np.concatenate(tested)
    assert len(np.unique(scored)) == len(scored)  # never twice
    unscored = 229 - len(scored)
    assert unscored <= 1  # only a clashing row (when its twin trains) goes unscored
    with pytest.raises(ValueError, match="fold 5"):
        split.fold_split(x, labels, 5, folds=5)
