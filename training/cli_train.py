"""``iotids train``: fit a CNN / LSTM / GRU / DNN model and write the converters' model dir."""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys

logger = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    """Flags mirror the ``[train]`` keys of ``--config F.toml``; flags win over the file."""
    parser.add_argument("--config", help="TOML file with a [train] table")
    parser.add_argument(
        "--dataset",
        help="captures, synthetic, ciciot2023, ton-iot, n-baiot, nsl-kdd, csv, features (workers)",
    )
    parser.add_argument("--path", help="file or folder of the dataset")
    parser.add_argument("--model", help="cnn, lstm, gru, gru-anomaly, gru-forecast or dnn")
    parser.add_argument("-o", "--out", help="output directory")
    parser.add_argument("--window", type=int, help="time steps per window (default 16)")
    parser.add_argument(
        "--step", help="step for captures: 1s, 0.5s, 100p (packets) or 20p/1s (whichever first)"
    )
    parser.add_argument(
        "--padding", help="zeros: pad each recording's first windows as the gateway does (none)"
    )
    parser.add_argument(
        "--scaler",
        help="minmax, or quantile: each feature through its training quantiles, for int8 "
        "tabular models (minmax)",
    )
    parser.add_argument(
        "--partial-windows",
        type=float,
        help="share S of windows near a stream's start copied with padded first steps (0)",
    )
    parser.add_argument(
        "--transition-windows",
        type=float,
        help="share S of attack windows near a run's start copied with benign first steps: "
        "an attack after the site's traffic (0)",
    )
    parser.add_argument(
        "--onset-weight",
        type=float,
        help="weight x on windows ending in an attack's first 2 steps: decide early (1)",
    )
    parser.add_argument(
        "--strict", action="store_true", default=None, help="too few windows of a class: error"
    )
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--patience", type=int, help="early-stopping patience in epochs")
    parser.add_argument("--min-epochs", type=int, help="never stop before this epoch (10)")
    parser.add_argument(
        "--members", type=int, help="dnn: sub-networks averaged inside the one model (1)"
    )
    parser.add_argument(
        "--class-weight-power", type=float, help="class weights = balanced ** this (1)"
    )
    parser.add_argument(
        "--distill", type=float, help="weight of a RandomForest teacher's soft labels (0)"
    )
    parser.add_argument(
        "--distill-augment",
        type=float,
        help="dnn: RandomForest-labelled new rows per training row (0)",
    )
    parser.add_argument("--seed", type=int)
    parser.add_argument(
        "--seeds", type=int, help="train N seeds from --seed, report mean ± std, keep the best"
    )
    parser.add_argument("--units", type=int, help="width of the hidden layers")
    parser.add_argument("--dropout", type=float, help="dropout rate (0.2)")
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--target-fpr", type=float, help="gru-anomaly threshold FPR (0.01)")
    parser.add_argument(
        "--false-alarms-per-day",
        type=float,
        help="gru-forecast: threshold for at most this many alarms a day on validation (1)",
    )
    parser.add_argument("--split", help="auto, time-block, blocks, stratified or by-file")
    parser.add_argument("--blocks", type=int, help="contiguous blocks per file for --split blocks")
    parser.add_argument("--test-files", nargs="*", help="group names for a by-file split")
    parser.add_argument("--val-files", nargs="*", help="group names held for validation")
    parser.add_argument("--label-mode", help="loader label mode (family/binary, category...)")
    parser.add_argument(
        "--mapping", help="TOML file: [[rule]] labels for captures, [families] label = family"
    )
    parser.add_argument("--label-column", help="csv: the label column")
    parser.add_argument("--drop-columns", nargs="*", help="csv: columns to ignore")
    parser.add_argument(
        "--part", help="synthetic: traffic or telemetry (default: traffic if present)"
    )
    parser.add_argument("--max-rows", type=int, help="read at most this many rows per file")
    parser.add_argument(
        "--stream", action="store_true", default=None, help="stream CSV chunks via tf.data"
    )
    parser.add_argument(
        "--cluster-spec",
        help='train across TensorFlow workers: JSON file or text, {"worker": ["host:port", ...]}',
    )
    parser.add_argument("--worker-index", type=int, help="this worker's index in the cluster spec")
    parser.add_argument(
        "--cluster-timeout",
        type=float,
        help="seconds without the other workers: one line, then killed, status 137 (300)",
    )
    parser.add_argument("--json", action="store_true", help="print metrics as JSON")


def run(args: argparse.Namespace) -> int:
    """Train; exit 2 on a configuration error."""
    from agent.quiet import quiet_tensorflow

    quiet_tensorflow()
    from dataclasses import fields

    from training.config import ConfigError, TrainConfig, load_config

    # ``verbose`` is the command line's logging count, not the config's epoch-progress switch:
    # per-epoch progress is on unless ``--quiet``.
    overrides = {
        f.name: getattr(args, f.name)
        for f in fields(TrainConfig)
        if hasattr(args, f.name) and f.name != "verbose"
    }
    if getattr(args, "quiet", False):
        overrides["verbose"] = 0
    try:
        config = load_config(args.config, overrides)
        if config.dataset == "features":
            from training.multiworker import train_multiworker as runner
        elif config.stream:
            from training.stream import train_streaming as runner
        else:
            from training.train import train as runner
        if config.seeds > 1:
            from training.seeds import train_seeds

            summary = train_seeds(config, runner)
        else:
            summary = runner(config)
    except (ConfigError, OSError, ValueError) as exc:  # OSError: --out a file, unwritable
        print(f"iotids train: {exc}", file=sys.stderr)  # noqa: T201 - the CLI talks to its user
        return 2
    except RuntimeError as exc:
        from training.cluster import ClusterError

        if not isinstance(exc, ClusterError):
            raise
        print(f"iotids train: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    for warning in summary.get("warnings", []):
        print(f"iotids train: WARNING: {warning}", file=sys.stderr)  # noqa: T201
    if args.json:
        print(json.dumps(summary, indent=2))  # noqa: T201
    elif "cluster" in summary:
        model, cluster = summary["model"], summary["cluster"]
        wrote = f"wrote {config.out}" if cluster["chief"] else "the chief writes the model"
        print(  # noqa: T201
            f"{config.model}: accuracy {model['accuracy']:.4f} macro-F1 {model['macro_f1']:.4f}; "
            f"worker {cluster['index']} of {cluster['workers']}; {wrote}"
        )
    else:
        model, base = summary["model"], summary["baseline"]
        print(  # noqa: T201
            f"{config.model}: accuracy {model['accuracy']:.4f} macro-F1 {model['macro_f1']:.4f}; "
            f"RandomForest macro-F1 {base['macro_f1']:.4f}; wrote {config.out}"
        )
        if "seeds" in summary:
            f1 = summary["seeds"]["spread"].get("model.macro_f1", {})
            print(  # noqa: T201
                f"{config.seeds} seeds: macro-F1 {f1.get('mean', math.nan):.4f} ± "
                f"{f1.get('std', math.nan):.4f}; kept seed {summary['seeds']['kept']} "
                "(best on validation)"
            )
    return 0
