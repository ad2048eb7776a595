"""``iotids train --seeds N``: every metric's spread over the seeds, the best on validation kept."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from agent.cli import main
from tests.training.test_mapping import KERAS_NUMPY_COPY, _capture
from training.config import ConfigError, TrainConfig
from training.seeds import spread, train_seeds, validation_score


def _fake_runner(val: dict[int, float]) -> Any:
    """Writes a model directory like train() does; seed s scores val[s] on validation."""

    def run(config: TrainConfig) -> dict[str, Any]:
        out = Path(config.out)
        out.mkdir(parents=True)
        (out / "model.keras").write_text(f"seed {config.seed}")
        (out / "report.md").write_text(f"# seed {config.seed}\n")
        assert config.seeds == 1
        f1 = 0.8 + config.seed / 100
        summary = {
            "model": {"accuracy": 0.9, "macro_f1": f1, "per_class": {"scan": {"f1": f1}}},
            "baseline": {"macro_f1": 0.85},
            "history": {"val_macro_f1": [0.1, val[config.seed]]},
            "confusion": [[1, 0], [0, 1]],
        }
        (out / "metrics.json").write_text(json.dumps(summary))
        return summary

    return run


def test_seeds_keep_the_best_on_validation_and_report_the_spread(tmp_path: Path) -> None:
    config = TrainConfig("captures", ".", "cnn", str(tmp_path / "out"), seed=3, seeds=3)
    # seed 4 is best on validation although seed 5 is best on test: test never chooses
    summary = train_seeds(config, _fake_runner({3: 0.7, 4: 0.9, 5: 0.8}))
    out = tmp_path / "out"
    assert summary["seeds"]["seeds"] == [3, 4, 5]
    assert summary["seeds"]["kept"] == 4
    assert (out / "model.keras").read_text() == "seed 4"
    assert sorted(p.name for p in (out / "seeds").iterdir()) == ["seed-3", "seed-4", "seed-5"]
    f1 = summary["seeds"]["spread"]["model.macro_f1"]
    assert f1["mean"] == pytest.approx(0.84)
    assert f1["std"] == pytest.approx(0.01)
    assert (f1["min"], f1["max"]) == (pytest.approx(0.83), pytest.approx(0.85))
    assert summary["seeds"]["spread"]["model.per_class.scan.f1"]["mean"] == pytest.approx(0.84)
    assert summary["seeds"]["spread"]["baseline.macro_f1"]["std"] == 0.0
    assert json.loads((out / "metrics.json").read_text())["seeds"]["kept"] == 4
    report = (out / "report.md").read_text()
    assert report.startswith("# seed 4")
    assert "| model.macro_f1 | 0.8400 ± 0.0100 | 0.8300 | 0.8500 |" in report


def test_validation_score_prefers_macro_f1_then_loss() -> None:
    assert validation_score({"history": {"val_macro_f1": [0.2, 0.6, 0.5]}}) == 0.6
    assert validation_score({"history": {"val_loss": [0.3, 0.1]}}) == -0.1
    assert validation_score({"history": {}}) == float("-inf")
    small = {"val_macro_f1": [0.9], "val_loss": [0.4, 0.2]}
    assert validation_score({"history": small, "early_stopping": "val_loss"}) == -0.2
    assert spread([{"model": {"f1": 0.5}}])["model.f1"]["std"] == 0.0


def test_seeds_must_be_at_least_one() -> None:
    with pytest.raises(ConfigError, match=r"train\.seeds"):
        replace(TrainConfig("captures", ".", "cnn", "o"), seeds=0)


@pytest.mark.tf
@pytest.mark.slow
@pytest.mark.filterwarnings(KERAS_NUMPY_COPY)
def test_train_cli_with_two_seeds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    captures = tmp_path / "captures"
    captures.mkdir()
    for name in ("benign-a", "synflood-b", "synscan-c"):
        _capture(captures / f"{name}.pcap", name.split("-")[0])
    out = tmp_path / "model"
    code = main(
        ["train", "--dataset", "captures", "--path", str(captures), "--model", "dnn",
         "--step", "10p", "--window", "2", "--epochs", "2", "--seeds", "2", "--out", str(out),
         "--quiet"]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "2 seeds: macro-F1 " in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["seeds"]["seeds"] == [0, 1]
    assert metrics["seeds"]["kept"] in (0, 1)
    assert "model.macro_f1" in metrics["seeds"]["spread"]
    assert (out / "model.keras").is_file()
    assert (out / "preprocess.json").is_file()
    assert "## 2 seeds (0, 1)" in (out / "report.md").read_text()
