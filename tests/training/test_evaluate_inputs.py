"""``iotids evaluate --model`` on data of another kind, or on a folder that is no model: the
loader gets only the options it takes, and a wrong folder is one line naming the fix."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from training.datasets import load
from training.scoring import load_like, read_state
from training.synth.scenario import preset
from training.synth.traffic import generate_traffic


def test_another_kind_keeps_only_the_options_its_loader_takes(tmp_path: Path) -> None:
    scenario = preset("benign").with_overrides(seed=3, duration=20)
    generate_traffic(scenario, tmp_path / "synth")
    (tmp_path / "captures").mkdir()
    shutil.copy(tmp_path / "synth" / "traffic.pcap", tmp_path / "captures" / "benign-a.pcap")
    trained = load("synthetic", str(tmp_path / "synth"), part="traffic", step="2s")
    state = {
        "dataset": {"kind": "synthetic", "options": {"part": "traffic", "step": "2s"}},
        "columns": trained.columns,
        "schema_id": trained.feature_set.schema_id,
        "feature_set": trained.feature_set.id,
    }
    # the synthetic loader's ``part`` was passed on and refused (a TypeError traceback)
    captures = load_like(state, "captures", str(tmp_path / "captures"))
    assert len(captures.x) == len(trained.x)  # the model's 2 s step, kept: it is shared
    assert set(captures.label_names.tolist()) == {"benign"}


def test_a_folder_that_is_no_model_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as error:
        read_state(tmp_path)
    assert str(error.value) == (
        f"--model {tmp_path}: no preprocess.json in it; give the folder iotids train -o wrote"
    )
