"""Model quality on the shared data (issue 4, "Quality"): measured, printed, never asserted.

* MQTTset captures, ``cnn`` on a time-block split: macro-F1, target >= 0.95.
* CICIoT2023 sample, ``dnn`` on a stratified split, 10 families: macro-F1 vs a RandomForest.
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
    if "benign_vs_attack" in model:
        rows.append(_row(case, "benign_vs_attack_fpr", round(model["benign_vs_attack"]["fpr"], 4)))
    delay = model.get("detection_delay")
    if delay and delay.get("median_steps") is not None:
        rows.append(_row(case, "detection_delay_median", delay["median_steps"], "steps"))
    return rows


def run(quick: bool = False) -> list[dict[str, object]]:
    """Every quality figure of issue 4 on the shared data."""
    from training.quiet import quiet_tensorflow

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
    summary, seconds = _train(
        "ciciot-dnn",
        quick,
        dataset="ciciot2023",
        path=str(DATASETS / "ciciot2023_sample"),
        model="dnn",
        units=64,
        epochs=60,
        patience=8,
    )
    forest = summary["baseline"]["macro_f1"]
    rows += _case_rows("ciciot2023-dnn 10 families", summary, seconds, f">= RF {forest:.4f}")
    for device in DEVICES[:1] if quick else DEVICES:
        summary, seconds = _train(
            f"ton-{device}",
            quick,
            dataset="ton-iot",
            path=str(DATASETS / "ton_iot_telemetry" / f"Train_Test_IoT_{device}.csv"),
            model="gru",
            window=16,
            epochs=15,
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
    print(f"{'case':40s} {'metric':24s} {'value':>10s} {'unit':6s} target")
    for r in rows:
        case, metric, value, unit = (str(r[k]) for k in ("case", "metric", "value", "unit"))
        print(f"{case:40s} {metric:24s} {value:>10s} {unit:6s} {r['target']}")


if __name__ == "__main__":
    main()
