"""``iotids evaluate``: score a trained model on other data with its saved preprocessing."""

from __future__ import annotations

import argparse
import json
import logging
import sys

logger = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    """``--model DIR --dataset KIND --path P [--json]``."""
    parser.add_argument("--model", required=True, help="a directory written by iotids train")
    parser.add_argument("--dataset", help="dataset kind (default: the one the model trained on)")
    parser.add_argument("--path", required=True, help="file or folder to score")
    parser.add_argument("--json", action="store_true", help="print every metric as JSON")


def run(args: argparse.Namespace) -> int:
    """Evaluate; exit 2 when the data does not fit the model."""
    from training.quiet import quiet_tensorflow

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
