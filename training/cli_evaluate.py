"""``iotids evaluate``: score a trained model on other data with its saved preprocessing."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

logger = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    """``--model DIR``, ``--bundle B --dataset KIND`` or ``--events --bundle B``; ``--path P``."""
    parser.add_argument("--model", help="a directory written by iotids train")
    parser.add_argument("--dataset", help="dataset kind (default: the one the model trained on)")
    parser.add_argument("--path", required=True, help="file or folder to score")
    parser.add_argument("--json", action="store_true", help="print every metric as JSON")
    parser.add_argument(
        "--events",
        action="store_true",
        help="replay labelled captures through the agent and score per attack (needs --bundle)",
    )
    parser.add_argument(
        "--bundle",
        help="a signed bundle: its int8 model scored on --dataset, or replayed with --events",
    )
    parser.add_argument(
        "--trust-key", action="append", default=[], metavar="PUB", help="the bundle's signer key"
    )
    parser.add_argument(
        "--float-model",
        help="--bundle: float reference on the same rows (.tflite, .keras or training folder)",
    )
    parser.add_argument("-o", "--out", help="--events: write events.json, events.md and a timeline")
    # --events: the agent's debounce (None: the agent's own defaults, agent.inference.Debounce)
    parser.add_argument("--raise-k", type=int, help="--events: windows to raise (of n; 2)")
    parser.add_argument("--raise-n", type=int, help="--events: window span for raising (3)")
    parser.add_argument("--clear-m", type=int, help="--events: clean windows to end (3)")
    parser.add_argument(
        "--calibration",
        type=Path,
        help="--events: a site calibration (iotids agent calibrate) in force, as on that site",
    )


def run(args: argparse.Namespace) -> int:
    """Evaluate; exit 2 when the data does not fit the model."""
    if args.events:
        return _events(args)
    if args.bundle:
        return _bundle(args)
    if not args.model:
        print(  # noqa: T201 - the CLI talks to its user
            "iotids evaluate: --model is required (or --bundle, or --events)", file=sys.stderr
        )
        return 2
    from agent.quiet import quiet_tensorflow

    quiet_tensorflow()
    from training.scoring import SchemaMismatch, evaluate_model

    try:
        result = evaluate_model(args.model, args.dataset, args.path)
    except (SchemaMismatch, FileNotFoundError, ValueError) as exc:
        print(f"iotids evaluate: {exc}", file=sys.stderr)  # noqa: T201 - the CLI talks to its user
        return 2
    if args.json:
        print(json.dumps(result, indent=2))  # noqa: T201
        return 0
    print(  # noqa: T201
        f"{result['n']} samples: accuracy {result['accuracy']:.4f} "
        f"macro-F1 {result['macro_f1']:.4f} over {result['macro_f1_classes']} classes "
        f"weighted-F1 {result['weighted_f1']:.4f}"
    )
    for label, m in result["per_class"].items():
        if m.get("absent"):
            print(f"  {label:16s} absent: no samples and never predicted (not in macro-F1)")  # noqa: T201
            continue
        print(  # noqa: T201
            f"  {label:16s} P {m['precision']:.3f} R {m['recall']:.3f} F1 {m['f1']:.3f} "
            f"FPR {m['fpr']:.4f} FNR {m['fnr']:.4f} n {m['support']}"
        )
    return 0


def _events(args: argparse.Namespace) -> int:
    """Event-level evaluation through the agent's replay path."""
    from agent.bundle import BundleError, load_bundle, load_public_key
    from agent.calibrate_cli import load_for_replay
    from agent.config import ConfigError
    from agent.inference import Debounce
    from training import events_report
    from training.events import evaluate_events

    if not args.bundle:
        print("iotids evaluate: --events needs --bundle", file=sys.stderr)  # noqa: T201
        return 2
    # every raise / update / end of the replay would be an INFO line: the report says it all
    logging.getLogger("agent.decide").setLevel(logging.WARNING)
    try:
        keys = [load_public_key(path) for path in args.trust_key]
        bundle = load_bundle(args.bundle, keys)
        given = {k: getattr(args, k) for k in ("raise_k", "raise_n", "clear_m")}
        debounce = Debounce(**{k: v for k, v in given.items() if v is not None})
        calibration = load_for_replay(args.calibration, bundle.manifest.bundle_id)
        result = evaluate_events(bundle, args.path, debounce, calibration)
    except (BundleError, ConfigError, OSError, ValueError) as exc:
        print(f"iotids evaluate: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    if args.out:
        report = events_report.write(result, Path(args.out))
        logger.info("wrote %s", report)
    if args.json:
        print(json.dumps(result, indent=2))  # noqa: T201
    else:
        print(events_report.markdown(result), end="")  # noqa: T201
    return 0


def _bundle(args: argparse.Namespace) -> int:
    """A bundle's int8 model on a raw dataset, the float reference beside it when given."""
    from agent.bundle import BundleError
    from training.bundle_eval import evaluate_bundle

    if not args.dataset:
        print("iotids evaluate: --bundle needs --dataset KIND", file=sys.stderr)  # noqa: T201
        return 2
    try:
        result = evaluate_bundle(
            Path(args.bundle),
            [Path(k) for k in args.trust_key],
            args.dataset,
            args.path,
            Path(args.float_model) if args.float_model else None,
        )
    except (BundleError, OSError, ValueError) as exc:
        print(f"iotids evaluate: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    if args.json:
        print(json.dumps(result, indent=2))  # noqa: T201
        return 0
    metrics = result["metrics"]
    print(f"bundle {result['bundle_id']} on {result['dataset']} {result['path']}")  # noqa: T201
    for side in ("quantized", "float"):
        figures = metrics.get(side)
        if isinstance(figures, dict):
            print(  # noqa: T201
                f"  {side:9s} {figures['n']} windows: accuracy {figures['accuracy']:.4f} "
                f"macro-F1 {figures['macro_f1']:.4f}"
            )
        else:
            print(f"  {side:9s} {metrics.get(side + '_source')}")  # noqa: T201
    if "macro_f1_drop" in metrics:
        print(f"  macro-F1 drop {metrics['macro_f1_drop'] * 100:.2f} points")  # noqa: T201
    return 0
