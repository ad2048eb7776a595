"""Training across TensorFlow workers: the cluster spec, the deal of recordings, two real workers.

The end-to-end test starts real ``iotids train`` processes on loopback ports: a two-worker
cluster and, at the same time, a one-worker run on the same recordings, and compares them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.broker import free_port
from tests.training.feature_recordings import CLASSES, write_recordings
from training import feature_shards as shards
from training.cluster import read_cluster
from training.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
LABELS = ("benign", "scan", "synflood")  # benign first, as every dataset orders its classes
PREPROCESS_KEYS = {
    "feature_set", "schema_id", "columns", "step", "window", "input_shape", "model_type", "task",
    "scaler", "labels", "categories", "thresholds", "threshold_calibration", "encoders", "split",
}  # fmt: skip
# macro-F1 of one worker and of two may differ by this much: the same data, split and global
# batch, but each worker shuffles its own shard, so batches (and dropout) differ
F1_TOLERANCE = 0.05


def test_cluster_spec_from_a_file_inline_or_tf_config(tmp_path: Path) -> None:
    spec = tmp_path / "cluster.json"
    spec.write_text('{"worker": ["127.0.0.1:2222", "gpu-box.lan:2223"]}', encoding="utf-8")
    cluster = read_cluster(str(spec), 1)
    assert cluster.workers == ("127.0.0.1:2222", "gpu-box.lan:2223")
    assert (cluster.index, cluster.size, cluster.chief) == (1, 2, False)
    tf_config = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}
    assert read_cluster(json.dumps(tf_config), None).chief
    assert read_cluster(json.dumps(tf_config), 1).index == 1  # the flag wins over the task


@pytest.mark.parametrize(
    ("spec", "index", "message"),
    [
        ("{not json", 0, "train.cluster_spec: not JSON"),
        ('{"worker": ["a:1"], "ps": ["b:2"]}', 0, "exactly one job, 'worker'"),
        ('{"worker": ["a:1", "a:1"]}', 0, "listed twice"),
        ('{"worker": ["a"]}', 0, "'a' is not a 'host:port' address"),
        ('{"worker": ["a:70000"]}', 0, "is not a 'host:port'"),
        ('{"worker": ["a:1", "b:2"]}', 2, "train.worker_index: must be 0..1"),
        ('{"worker": ["a:1"]}', None, "train.worker_index: required"),
        ("/no/such/spec.json", 0, "train.cluster_spec: cannot read"),
    ],
)
def test_bad_cluster_specs_name_the_key(spec: str, index: int | None, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        read_cluster(spec, index)


def test_config_keys_of_training_across_workers() -> None:
    base = {"dataset": "captures", "path": "p", "model": "cnn", "out": "o"}
    with pytest.raises(ConfigError, match=r"^train\.dataset: across workers"):
        load_config(None, {**base, "cluster_spec": '{"worker": ["a:1"]}'})
    with pytest.raises(ConfigError, match=r"^train\.cluster_timeout: must be 1\.\.86400"):
        load_config(None, {**base, "dataset": "features", "cluster_timeout": 0})


def test_every_recording_goes_to_exactly_one_worker_and_loads_balance(tmp_path: Path) -> None:
    folder = write_recordings(tmp_path / "feat", per_class=3, steps=40)
    found = shards.recordings(str(folder))
    assert shards.labels_of(found) == list(LABELS)
    dealt = shards.deal(found, 2)
    assert shards.deal(found, 2) == dealt  # every worker computes the same deal
    names = sorted(r.path.name for shard in dealt for r in shard)
    assert names == sorted(r.path.name for r in found)
    sizes = [sum(r.size for r in shard) for shard in dealt]
    assert max(sizes) - min(sizes) <= max(r.size for r in found)
    with pytest.raises(ConfigError, match="10 workers but 9 recordings"):
        shards.deal(found, 10)


def test_a_shards_survey_counts_the_windows_of_its_recordings_only(tmp_path: Path) -> None:
    folder = write_recordings(tmp_path / "feat", per_class=2, steps=100)
    found = shards.recordings(str(folder))
    labels = shards.labels_of(found)
    mine = shards.deal(found, 2)[0]
    survey = shards.survey(mine, labels, 8, "none", 1000, 0)
    assert survey.steps_read == 100 * len(mine)
    # 70 / 10 / 20 steps per recording, windows of 8 inside each part: 63 / 3 / 13
    assert survey.counts.sum(axis=1).tolist() == [63 * len(mine), 3 * len(mine), 13 * len(mine)]
    assert len(survey.sample) == 70 * len(mine)  # every training step, under the cap
    padded = shards.survey(mine, labels, 8, "zeros", 1000, 0)
    assert padded.counts[0].sum() == 70 * len(mine)  # the padded start: one window per step


def test_a_folder_without_recordings_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no \.npz files"):
        shards.recordings(str(tmp_path))
    (tmp_path / "benign-x.pcap.npz").write_bytes(b"not a zip")
    (found,) = shards.recordings(str(tmp_path))
    with pytest.raises(ConfigError, match="is not an `iotids features` file"):
        shards.read_steps(found)


def _train(folder: Path, out: Path, workers: list[str], index: int) -> subprocess.Popen[str]:
    """One ``iotids train`` worker process, quiet (-q), on the given cluster."""
    command = [
        sys.executable, "-m", "agent.cli", "-q", "train", "--dataset", "features",
        "--path", str(folder), "--model", "cnn", "--window", "8", "--epochs", "4",
        "--min-epochs", "1", "--batch-size", "32", "--cluster-spec",
        json.dumps({"worker": workers}), "--worker-index", str(index), "--cluster-timeout", "60",
        "--out", str(out), "--json",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": "-1"}
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )


@pytest.mark.slow
@pytest.mark.tf
def test_two_workers_on_loopback_train_like_one(tmp_path: Path) -> None:
    folder = write_recordings(tmp_path / "feat", per_class=2, steps=160)
    pair = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    runs = {
        "one": _train(folder, tmp_path / "one", [f"127.0.0.1:{free_port()}"], 0),
        "chief": _train(folder, tmp_path / "chief", pair, 0),
        "worker": _train(folder, tmp_path / "worker", pair, 1),
    }
    results = {}
    for name, process in runs.items():
        stdout, stderr = process.communicate(timeout=240)
        assert process.returncode == 0, f"{name}: {stderr[-2000:]}"
        assert stderr == "", f"{name} is not quiet with -q: {stderr[-2000:]}"
        results[name] = json.loads(stdout)
    for name in ("one", "chief"):
        for part in ("model.keras", "preprocess.json", "metrics.json", "report.md"):
            assert (tmp_path / name / part).is_file(), f"{name}: no {part}"
        with np.load(tmp_path / name / "data" / "test.npz") as test:
            assert test["x"].shape[1:] == (8, 52, 1)
        state = json.loads((tmp_path / name / "preprocess.json").read_text(encoding="utf-8"))
        assert set(state) >= PREPROCESS_KEYS
        assert (state["step"], state["labels"]) == ({"kind": "time", "size": 1.0}, list(LABELS))
    assert not (tmp_path / "worker").exists(), "a worker other than the chief wrote files"
    total_steps = 160 * 2 * len(CLASSES)
    table = results["chief"]["workers"]
    assert results["worker"]["workers"] == table  # every worker got the same table
    assert sum(w["steps_read"] for w in table) == total_steps
    assert all(0 < w["steps_read"] < total_steps for w in table)  # nobody read it all
    assert results["one"]["workers"][0]["steps_read"] == total_steps
    one, two = results["one"]["model"], results["chief"]["model"]
    assert results["chief"]["windows"] == results["one"]["windows"]
    assert sum(map(sum, two["confusion_matrix"])) == sum(map(sum, one["confusion_matrix"]))
    assert results["worker"]["model"]["macro_f1"] == two["macro_f1"]
    assert abs(two["macro_f1"] - one["macro_f1"]) <= F1_TOLERANCE, (one, two)
    assert one["macro_f1"] >= 0.9  # and both learned the (separable) classes


def test_a_worker_without_progress_is_stopped_with_one_line() -> None:
    # a worker stuck (here: asleep) past the timeout: TensorFlow's real hang holds the GIL and
    # SIGTERM, which the watchdog's own process does not need
    code = (
        "import time\n"
        "from training.cluster import Cluster, Watchdog\n"
        "Watchdog(Cluster(('127.0.0.1:1', '127.0.0.1:2'), 1), 1.0)\n"
        "time.sleep(60)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=30
    )
    assert done.returncode == -9
    assert done.stderr.strip().splitlines() == [
        "iotids train: worker 1 of 2: no progress with the other workers (127.0.0.1:1, "
        "127.0.0.1:2) for 1 s (train.cluster_timeout): a worker did not start or has stopped; "
        "stopped this one"
    ]


def test_a_watchdog_told_of_progress_lets_the_worker_finish() -> None:
    code = (
        "import time\n"
        "from training.cluster import Cluster, Watchdog\n"
        "w = Watchdog(Cluster(('127.0.0.1:1',), 0), 1.5)\n"
        "for _ in range(4):\n"
        "    time.sleep(0.5)\n"
        "    w.alive()\n"
        "w.stop()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=30
    )
    assert (done.returncode, done.stderr) == (0, "")


@pytest.mark.tf
def test_a_bad_cluster_spec_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from agent.cli import main

    folder = write_recordings(tmp_path / "feat", per_class=1, steps=40)
    common = ["train", "--dataset", "features", "--path", str(folder), "--model", "cnn"]
    common += ["--out", str(tmp_path / "out")]
    cases = {
        "{broken": "iotids train: train.cluster_spec: not JSON",
        json.dumps({"worker": [f"127.0.0.1:{p}" for p in range(2000, 2004)]}): (
            "iotids train: train.cluster_spec: 4 workers but 3 recordings"
        ),
    }
    for spec, message in cases.items():
        assert main([*common, "--cluster-spec", spec, "--worker-index", "0"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        assert err[0].startswith(message)
    assert not (tmp_path / "out").exists()
