"""Model quality on the shared data: measured, printed, never asserted.

* MQTTset captures, ``cnn`` on a time-block split: macro-F1, target >= 0.95. What the figure
  means is printed with it: which classes the test split holds at all (``flood`` is 58 packets,
  3 steps of 20, no window of 8), and how far single features and a RandomForest without the
  host-identity features (TTL, distinct hosts and their entropies) separate the files. Each
  class is one recording of one tool, and the time-block test piece comes from the same
  recording: a perfect score says the recordings are distinguishable, not that the model finds
  these attacks in other traffic.
* CICIoT2023 sample, ``dnn`` on a stratified split, 10 families: macro-F1 vs a RandomForest,
  over several seeds (one seed's figures move by about a point either way on 1,922 test rows).
* TON_IoT telemetry, ``gru`` per device on a time-block split, next to a RandomForest.

Run ``python -m benchmarks.training_quality [--quick]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

DATASETS = Path(
    os.environ.get("IOTIDS_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets")
)
DEVICES = ("Fridge", "Garage_Door", "Motion_Light", "Thermostat")
SEEDS = (0, 1, 2)
MIN_SUPPORT = 10  # fewer test windows of a class than this make its F1 noise
HOST_IDENTITY = ("ttl_", "distinct_src", "distinct_dst", "entropy_src", "entropy_dst")


def _row(
    case: str, metric: str, value: object, unit: str = "", target: str = ""
) -> dict[str, object]:
    """One result row of the benchmark table."""
    return {
        "benchmark": "training_quality",
        "case": case,
        "metric": metric,
        "value": value,
        "unit": unit,
        "target": target,
    }


def _train(case: str, quick: bool, **options: Any) -> tuple[dict[str, Any], float]:
    """Train one configuration into a temporary directory; its metrics and wall time."""
    from training.config import TrainConfig
    from training.train import train

    with tempfile.TemporaryDirectory(prefix=f"iotids-{case}-") as out:
        epochs = options.pop("epochs", 30)
        config = TrainConfig(out=out, epochs=3 if quick else epochs, verbose=0, **options)
        started = time.perf_counter()
        summary = train(config)
        return summary, time.perf_counter() - started


def _case_rows(
    case: str, summary: dict[str, Any], seconds: float, target: str
) -> list[dict[str, object]]:
    """Model and RandomForest figures of one trained case."""
    model, forest = summary["model"], summary["baseline"]
    rows = [
        _row(case, "macro_f1", round(model["macro_f1"], 4), "", target),
        _row(case, "accuracy", round(model["accuracy"], 4)),
        _row(case, "rf_macro_f1", round(forest["macro_f1"], 4), "", "reference"),
        _row(case, "rf_accuracy", round(forest["accuracy"], 4), "", "reference"),
        _row(case, "test_windows", summary["windows"]["test"], "windows"),
        _row(case, "train_time", round(seconds, 1), "s"),
    ]
    support = {label: c["support"] for label, c in model["per_class"].items()}
    absent = [label for label, n in support.items() if n == 0]
    thin = [f"{label} {n}" for label, n in support.items() if 0 < n < MIN_SUPPORT]
    rows.append(
        _row(
            case,
            "classes_in_test",
            f"{len(support) - len(absent)}/{len(support)}",
            "",
            f"absent: {', '.join(absent) or '-'}; under {MIN_SUPPORT}: {', '.join(thin) or '-'}",
        )
    )
    if "benign_vs_attack" in model:
        rows.append(_row(case, "benign_vs_attack_fpr", round(model["benign_vs_attack"]["fpr"], 4)))
    delay = model.get("detection_delay")
    if delay and delay.get("median_steps") is not None:
        rows.append(_row(case, "detection_delay_median", delay["median_steps"], "steps"))
    return rows


def _separability(case: str, **options: Any) -> list[dict[str, object]]:
    """How the classes of a capture set separate: best single features, RF without host ids."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import f1_score
    from sklearn.tree import DecisionTreeClassifier

    from training.config import TrainConfig
    from training.datasets import load
    from training.train import prepare

    config = TrainConfig(out="unused", verbose=0, **options)
    dataset = load(config.dataset, config.path, **config.loader_options())
    prepared = prepare(config, dataset)
    train, test = prepared.x["train"][..., 0], prepared.x["test"][..., 0]
    y_train, y_test = prepared.y["train"], prepared.y["test"]
    rows = []
    singles = []
    for f, column in enumerate(dataset.columns):
        tree = DecisionTreeClassifier(max_depth=4, random_state=0)
        tree.fit(train[:, -1, [f]], y_train)
        predicted = tree.predict(test[:, -1, [f]])
        singles.append((f1_score(y_test, predicted, average="macro"), column))
    for score, column in sorted(singles, reverse=True)[:3]:
        rows.append(_row(case, f"one_feature {column}", round(float(score), 4), "", "depth-4 tree"))
    keep = [i for i, c in enumerate(dataset.columns) if not c.startswith(HOST_IDENTITY)]
    forest = RandomForestClassifier(100, random_state=0, n_jobs=1, class_weight="balanced")
    forest.fit(train[:, :, keep].reshape(len(train), -1), y_train)
    predicted = forest.predict(test[:, :, keep].reshape(len(test), -1))
    score = f1_score(y_test, predicted, average="macro")
    rows.append(
        _row(case, "rf_macro_f1_no_host_ids", round(float(score), 4), "", "no TTL/distinct hosts")
    )
    return rows


def _seeded(case: str, quick: bool, **options: Any) -> list[dict[str, object]]:
    """One case over SEEDS: every seed's model and RF figures, then their means."""
    models, forests = [], []
    rows: list[dict[str, object]] = []
    for seed in SEEDS[:1] if quick else SEEDS:
        summary, seconds = _train(f"{case}-{seed}", quick, seed=seed, **dict(options))
        models.append(summary["model"]["macro_f1"])
        forests.append(summary["baseline"]["macro_f1"])
        rows += _case_rows(f"{case} seed {seed}", summary, seconds, f">= RF {forests[-1]:.4f}")
    mean_model, mean_forest = sum(models) / len(models), sum(forests) / len(forests)
    rows.append(_row(case, "mean_macro_f1", round(mean_model, 4), "", f">= RF {mean_forest:.4f}"))
    rows.append(_row(case, "mean_rf_macro_f1", round(mean_forest, 4), "", "reference"))
    return rows


def run(quick: bool = False) -> list[dict[str, object]]:
    """Every quality figure (accuracy, F1, int8 agreement, size) on the shared data."""
    from agent.quiet import quiet_tensorflow

    quiet_tensorflow()
    rows: list[dict[str, object]] = []
    summary, seconds = _train(
        "mqttset-cnn",
        quick,
        dataset="captures",
        path=str(DATASETS / "mqttset_reduced_pcap"),
        model="cnn",
        step="20p",
        window=8,
        epochs=40,
        patience=6,
    )
    rows += _case_rows("mqttset-cnn 20p T8 time-block", summary, seconds, ">= 0.95")
    rows += _separability(
        "mqttset-cnn 20p T8 time-block",
        dataset="captures",
        path=str(DATASETS / "mqttset_reduced_pcap"),
        model="cnn",
        step="20p",
        window=8,
    )
    rows += _seeded(
        "ciciot2023-dnn 10 families",
        quick,
        dataset="ciciot2023",
        path=str(DATASETS / "ciciot2023_sample"),
        model="dnn",
        units=128,
        dropout=0.3,
        epochs=120,
        patience=15,
    )
    for device in DEVICES[:1] if quick else DEVICES:
        summary, seconds = _train(
            f"ton-{device}",
            quick,
            dataset="ton-iot",
            path=str(DATASETS / "ton_iot_telemetry" / f"Train_Test_IoT_{device}.csv"),
            model="gru",
            window=16,
            epochs=40,
            patience=8,
        )
        rows += _case_rows(f"ton-iot-gru {device.lower()}", summary, seconds, "vs RF")
    return rows


def main() -> None:
    """Print the benchmark table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 epochs, one TON_IoT device")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows = run(quick=args.quick)
    print(f"{'case':40s} {'metric':30s} {'value':>10s} {'unit':6s} target")
    for r in rows:
        case, metric, value, unit = (str(r[k]) for k in ("case", "metric", "value", "unit"))
        print(f"{case:40s} {metric:30s} {value:>10s} {unit:6s} {r['target']}")


if __name__ == "__main__":
    main()
