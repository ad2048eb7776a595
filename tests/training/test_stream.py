"""``--stream``: hash splits keep duplicates together; a CSV trains through tf.data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.stream import row_buckets

KERAS_NUMPY_COPY = (
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)


def test_identical_rows_always_land_in_the_same_split() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((20_000, 5)).astype(np.float32)
    first = row_buckets(x)
    again = row_buckets(np.concatenate([x[::-1], x[:100]]))
    np.testing.assert_array_equal(again[: len(x)][::-1], first)
    np.testing.assert_array_equal(again[len(x) :], first[:100])
    share = {name: float((first == name).mean()) for name in ("train", "val", "test")}
    assert share["train"] == pytest.approx(0.7, abs=0.02)
    assert share["test"] == pytest.approx(0.2, abs=0.02)


def _table(path: Path, rows: int) -> None:
    rng = np.random.default_rng(1)
    label = rng.integers(0, 3, rows)
    x = rng.normal(label[:, None] * 2.0, 1.0, (rows, 4))
    lines = ["f0,f1,f2,f3,ignored,class"]
    lines += [
        ",".join(f"{v:.5f}" for v in r) + f",z,{'benign' if k == 0 else f'a{k}'}"
        for r, k in zip(x, label, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.tf
@pytest.mark.slow
@pytest.mark.filterwarnings(KERAS_NUMPY_COPY)
def test_streamed_csv_trains_and_writes_the_model_dir(tmp_path: Path) -> None:
    from agent.cli import main

    _table(tmp_path / "big.csv", 3000)
    out = tmp_path / "model"
    code = main(
        ["train", "--dataset", "csv", "--path", str(tmp_path / "big.csv"), "--model", "dnn",
         "--label-column", "class", "--drop-columns", "ignored", "--stream", "--epochs", "4",
         "--learning-rate", "0.01", "--out", str(out), "--quiet"]
    )  # fmt: skip
    assert code == 0
    state = json.loads((out / "preprocess.json").read_text())
    assert state["columns"] == ["f0", "f1", "f2", "f3"]
    assert state["split"]["method"].startswith("hash-of-row")
    counts = state["split"]["counts"]
    assert sum(sum(c.values()) for c in counts.values()) == 3000
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"]["n"] == sum(counts["test"].values())  # every test row scored
    assert metrics["model"]["macro_f1"] > 0.5  # the classes are separable
    assert (out / "data" / "test.npz").is_file()


@pytest.mark.tf
def test_a_streamed_table_with_a_hostile_or_single_class_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from agent.cli import main

    for name, labels in (("escape", ["benign", "x\x1b[2J"]), ("single", ["benign"])):
        path = tmp_path / f"{name}.csv"
        rows = [f"{i % 7},{i % 5},{labels[i % len(labels)]}" for i in range(200)]
        path.write_text("f0,f1,class\n" + "\n".join(rows) + "\n", encoding="utf-8")
        code = main(
            ["train", "--dataset", "csv", "--path", str(path), "--model", "dnn",
             "--label-column", "class", "--stream", "--epochs", "1",
             "--out", str(tmp_path / name), "--quiet"]
        )  # fmt: skip
        err = capsys.readouterr().err.strip()
        assert code == 2, err
        assert len(err.splitlines()) == 1, err
        assert "control characters" in err if name == "escape" else "one class only" in err
