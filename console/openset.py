"""``iotids openset``: train a benign model on a dataset and pair it with a classifier bundle.

It needs both desktop halves — training's loaders and autoencoder, the converter's int8
quantizer and bundle writer — which may not import each other, so the command lives here.
The pairing itself is ``converters.openset``; the benign model ``training.openset``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from agent.bundle import Manifest, read_bundle
from agent.features.steps import StepSpec
from agent.openset import SCALER_KINDS as SCALERS

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from training.openset import BenignTraining


def to_int8(model: Any, representative: npt.NDArray[np.float32]) -> bytes:
    """Full-int8 TFLite of a Keras model, TensorFlow's console chatter kept off the terminal."""
    from converters.quantize import quiet_conversion, to_tflite

    with quiet_conversion():
        return to_tflite(model, "int8", representative)


def dataset_step(step: StepSpec) -> tuple[str, float | None]:
    """The loader's step for a bundle's step (its own short form), and windows per day.

    ``step.text`` reads back as the same step: ``"20p/1.0s"`` for packets-or-time, which
    formatting the size as seconds turned into 20-second steps. Only time steps have a clock,
    so only they get windows per day (the threshold then also aims at 1 false alarm a day).
    """
    per_day = 86_400.0 / step.size if step.kind == "time" else None
    return step.text, per_day


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``iotids openset``."""
    parser.add_argument("--bundle", required=True, type=Path, help="the classifier bundle")
    parser.add_argument("--dataset", required=True, help="dataset kind (captures, synthetic)")
    parser.add_argument("--path", required=True, help="its folder: benign steps are learned")
    parser.add_argument(
        "--sign-key", required=True, type=Path, metavar="KEY", help="Ed25519 private key"
    )
    parser.add_argument("-o", "--out", required=True, type=Path, help="paired bundle to write")
    parser.add_argument("--epochs", type=int, default=60, help="autoencoder epochs (60)")
    parser.add_argument(
        "--scaler",
        choices=SCALERS,
        default="minmax",
        help="the benign model's scaler: minmax (default) or log1p-minmax (log1p first)",
    )
    parser.add_argument(
        "--quantile",
        type=float,
        default=0.999,
        help="held-out benign score quantile that sets the threshold (0.999)",
    )
    parser.add_argument(
        "--groups",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="score per feature group, each with its own edge (default); --no-groups: one score",
    )


def pair_bundle(
    bundle: Path,
    dataset_kind: str,
    path: str,
    private: Ed25519PrivateKey,
    out: Path,
    options: BenignTraining | None = None,
) -> str:
    """Train the benign model on the dataset's benign windows, write the pair; its bundle id.

    ``options`` may leave ``windows_per_day`` unset: it comes from the bundle's step. The pair
    is read back as the agent reads it (signature, hashes, the benign model's golden vectors).
    ValueError or OSError name what is wrong.
    """
    from agent.bundle import load_bundle
    from agent.openset import load_benign_model
    from converters.openset import pair
    from training.datasets import load
    from training.openset import BenignTraining, benign_windows, stream_starts, train_benign

    manifest = Manifest.from_json(read_bundle(bundle).manifest_bytes)
    step_text, per_day = dataset_step(manifest.step)
    dataset = load(dataset_kind, path, step=step_text)
    if dataset.feature_set.schema_id != manifest.schema_id:
        raise ValueError(f"dataset: schema {dataset.feature_set.schema_id} is not the bundle's")
    windows = benign_windows(dataset, manifest.window)
    options = dataclasses.replace(options or BenignTraining(), windows_per_day=per_day)
    starts = stream_starts(dataset, manifest.window, manifest.padding)
    trained = train_benign(windows, to_int8, options, starts, manifest.columns)
    paired = pair(bundle, trained.tflite, trained.spec, private, out)
    load_benign_model(load_bundle(out, [private.public_key()]))
    return paired.bundle_id


def run(args: argparse.Namespace) -> int:
    """Train the benign model on the dataset's benign windows and write the pair."""
    from agent.quiet import quiet_tensorflow

    quiet_tensorflow()
    from converters.signing import load_private_key
    from training.openset import BenignTraining

    options = BenignTraining(
        epochs=args.epochs, quantile=args.quantile, scaler=args.scaler, groups=args.groups
    )
    try:
        private = load_private_key(args.sign_key)
        bundle_id = pair_bundle(args.bundle, args.dataset, args.path, private, args.out, options)
    except (ValueError, OSError) as exc:
        print(f"iotids openset: {exc}", file=sys.stderr)  # noqa: T201 - the CLI talks
        return 2
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({size} bytes): {bundle_id}")  # noqa: T201
    return 0
