"""The whole chain through the ``iotids`` command: synth -> train -> keys -> convert -> verify ->
agent replay on a DIFFERENT scenario with TensorFlow blocked, and ``evaluate --bundle``.

The model is a small CNN trained in seconds on ``demo-train`` (720 s, window 4); the replayed
scenario is ``demo-test`` (another seed, another attack order, 0.8x rates), so a detection here
is a trained model generalising, not a model replaying its own training data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.cli import main as iotids
from tests.gateway import iotids_without_tensorflow
from training.synth.scenario import load_scenario

pytestmark = [pytest.mark.tf, pytest.mark.slow]

WINDOW = 4


@dataclass(frozen=True)
class Chain:
    """What the chain made: a signed int8 bundle, its key, its training folder, test traffic."""

    bundle: Path
    public_key: Path
    model_dir: Path
    test_dir: Path


def _iotids(*argv: str | Path) -> int:
    return iotids([str(a) for a in argv])


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    """synth -> train cnn -> keys -> convert int8 signed, once for the module."""
    root = tmp_path_factory.mktemp("pipeline")
    train_dir, test_dir, model_dir = root / "train", root / "test", root / "model"
    assert (
        _iotids(
            "synth", "traffic", "--preset", "demo-train", "--duration", "720", "--out", train_dir
        )
        == 0
    )
    assert _iotids("synth", "traffic", "--preset", "demo-test", "--out", test_dir) == 0
    assert (
        _iotids(
            "train",
            "--dataset",
            "synthetic",
            "--path",
            train_dir,
            "--model",
            "cnn",
            "--out",
            model_dir,
            "--step",
            "1s",
            "--window",
            str(WINDOW),
            "--epochs",
            "40",
            "--units",
            "32",
            "--patience",
            "8",
            "--split",
            "blocks",
            "--blocks",
            "20",
            "--seed",
            "0",
            "--quiet",
        )
        == 0
    )
    assert _iotids("keys", "generate", "--out", root / "signer") == 0
    bundle = root / "traffic-cnn.bundle"
    assert (
        _iotids(
            "convert",
            model_dir,
            "--quantize",
            "int8",
            "--out",
            bundle,
            "--sign-key",
            root / "signer.key",
        )
        == 0
    )
    return Chain(bundle, root / "signer.pub", model_dir, test_dir)


def _verify_json(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, Any]:
    capsys.readouterr()
    code = _iotids("verify", *argv, "--json", "--latency-runs", "20")
    return code, json.loads(capsys.readouterr().out)


def _evaluate_bundle_json(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, Any]:
    capsys.readouterr()
    code = _iotids("evaluate", *argv, "--json")
    return code, json.loads(capsys.readouterr().out)


def test_verify_passes_golden_and_signature(
    chain: Chain, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = _verify_json(capsys, chain.bundle, "--trust-key", chain.public_key)
    assert code == 0, report["budgets"]
    assert report["ok"]
    assert report["quantization"] == "int8"
    assert report["golden"]["status"] == "ok"
    assert report["signature"]["status"] == "ok"
    assert report["model_hash"]["status"] == "ok"


def _attack_windows(test_dir: Path) -> dict[str, tuple[float, float]]:
    """label -> (start, stop + one window) in Unix seconds, from the scenario's ground truth."""
    scenario = load_scenario(test_dir / "scenario.json")
    t0 = scenario.start_time
    return {a.name: (t0 + a.start, t0 + a.stop + WINDOW) for a in scenario.attacks}


def test_agent_replay_without_tensorflow_detects_flood_and_scan(chain: Chain) -> None:
    capture = chain.test_dir / "traffic.pcap"
    done = iotids_without_tensorflow(
        "agent",
        "replay",
        "--bundle",
        str(chain.bundle),
        "--capture",
        str(capture),
        "--trust-key",
        str(chain.public_key),
        "--json",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.rstrip().endswith("LOADED="), done.stderr[-500:]
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert events, done.stderr[-500:]
    truth = _attack_windows(chain.test_dir)
    # a detection is raised by its ``new``; a later attack on the same target may join it
    # as an ``update`` naming its own label (one incident per attack, several attacks)
    detected = {
        e["label"]
        for e in events
        if e["type"] in ("new", "update")
        and e["label"] in truth
        and truth[e["label"]][0] < e["window_end"] <= truth[e["label"]][1]
    }
    assert "syn_flood" in detected, sorted(detected)
    assert detected & {"tcp_syn_scan", "udp_scan"}, sorted(detected)
    assert {e["schema"] for e in events} == {"iotids.event/1"}
    assert all(e["model"] for e in events)


def test_evaluate_bundle_reports_quantized_metrics_on_that_data(
    chain: Chain, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = _evaluate_bundle_json(
        capsys,
        "--bundle",
        chain.bundle,
        "--trust-key",
        chain.public_key,
        "--dataset",
        "synthetic",
        "--path",
        chain.test_dir,
    )
    assert code == 0, report
    metrics = report["metrics"]
    assert metrics["quantized_source"] == "measured on --dataset"
    steps = len((chain.test_dir / "steps.csv").read_text().splitlines()) - 1
    assert metrics["quantized"]["n"] == steps - (WINDOW - 1)  # one window per step after T-1
    recall = {name: c["recall"] for name, c in metrics["quantized"]["per_class"].items()}
    assert {"benign", "syn_flood", "tcp_syn_scan"} <= set(recall)
    assert all(0.0 <= r <= 1.0 for r in recall.values())
    # No float model run on this data: no drop is computed from the converter's other test set.
    assert metrics["float"] is None
    assert "macro_f1_drop" not in metrics
    assert "--float-model" in metrics["float_source"]


def test_evaluate_bundle_with_training_folder_compares_on_the_same_rows(
    chain: Chain, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = _evaluate_bundle_json(
        capsys,
        "--bundle",
        chain.bundle,
        "--trust-key",
        chain.public_key,
        "--dataset",
        "synthetic",
        "--path",
        chain.test_dir,
        "--float-model",
        chain.model_dir,
    )
    metrics = report["metrics"]
    assert metrics["float_source"] == "float model measured on --dataset"
    assert metrics["float"]["n"] == metrics["quantized"]["n"]
    drop = metrics["float"]["macro_f1"] - metrics["quantized"]["macro_f1"]
    assert metrics["macro_f1_drop"] == pytest.approx(drop)
    assert set(metrics["recall_change"]) == set(metrics["quantized"]["per_class"])
    assert code == 0


def test_keras_float_model_without_tensorflow_is_one_clear_line(chain: Chain) -> None:
    done = iotids_without_tensorflow(
        "verify",
        str(chain.bundle),
        "--trust-key",
        str(chain.public_key),
        "--data",
        str(chain.model_dir / "data" / "test.npz"),
        "--float-model",
        str(chain.model_dir),
        "--latency-runs",
        "5",
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "a Keras model needs TensorFlow; install: pip install 'iotids[train]'" in done.stderr
