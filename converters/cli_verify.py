"""``iotids verify BUNDLE``: prove a bundle on this machine's runtime; non-zero when a budget fails.

Runs without TensorFlow (a gateway-only install).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``iotids verify``."""
    parser.add_argument("bundle", type=Path, help="bundle file")
    parser.add_argument(
        "--trust-key",
        type=Path,
        action="append",
        default=[],
        metavar="PUB",
        help="trusted public key (PEM/raw)",
    )
    parser.add_argument("--data", type=Path, help=".npz with scaled inputs x and labels y")
    # Scoring a bundle on a raw dataset needs training's loaders, which a gateway lacks: it
    # lives in `iotids evaluate --bundle`. The options stay (hidden) to say where it went.
    parser.add_argument("--dataset", help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--float-model",
        type=Path,
        help="float reference run on the same data: a .tflite, or (needs [train]) a .keras file "
        "or the training folder; without it only the quantized side is measured on new data",
    )
    parser.add_argument(
        "--budget-f1-drop", type=float, default=0.01, help="max macro-F1 drop (default 0.01)"
    )
    parser.add_argument(
        "--runtime-python",
        action="append",
        default=[],
        help="also load the model with this python (e.g. a tflite-runtime venv)",
    )
    parser.add_argument("--latency-runs", type=int, default=300, help="invocations to time")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def _data(args: argparse.Namespace) -> Any:
    """(x, y) from --data; None otherwise (--dataset is read once the manifest is known)."""
    if args.data is None:
        return None
    import numpy as np

    try:
        with np.load(args.data, allow_pickle=False) as npz:
            return np.asarray(npz["x"], dtype=np.float32), np.asarray(npz["y"]).astype(int)
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"--data {args.data}: needs an .npz with x and y ({exc})") from None


def run(args: argparse.Namespace) -> int:
    """Print the report; 0 when every budget passes, 1 when one fails, 2 for bad input."""
    from converters.verify import render, verify

    if args.dataset or args.path:
        print(  # noqa: T201 - the CLI talks to its user
            "iotids verify: scoring on a dataset moved to training: "
            "iotids evaluate --bundle BUNDLE --dataset KIND --path PATH (needs [train]); "
            "verify takes --data FILE.npz",
            file=sys.stderr,
        )
        return 2
    try:
        report = verify(
            args.bundle,
            args.trust_key,
            _data(args),
            args.float_model,
            args.budget_f1_drop,
            args.runtime_python,
            args.latency_runs,
        )
    except (ValueError, OSError) as exc:
        print(f"iotids verify: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    print(json.dumps(report, indent=2) if args.json else render(report))  # noqa: T201
    failed = [b["name"] for b in report["budgets"] if not b["ok"]]
    if failed:
        print(f"iotids verify: budget failed: {', '.join(failed)}", file=sys.stderr)  # noqa: T201
        return 1
    return 0
