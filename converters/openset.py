"""Pair a classifier bundle with a benign model: one bundle, one signature over both.

The classifier's manifest gains ``extra["openset"]`` (``agent.openset.OpenSetSpec``: the
benign model's sha256 and size, scaler, error scale, threshold and golden vectors) and the zip
gains the member ``anomaly.tflite``. The pair is re-signed with the given key and gets a new
bundle id (``<classifier id>+benign-<8 hex>``), so a device can tell a paired bundle from the
classifier alone. Written atomically; proven with the agent's own loader before it is kept.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from agent.bundle import COMPANION, MANIFEST, MODEL, SIGNATURE, Manifest, key_id, read_bundle
from agent.openset import SECTION, OpenSetSpec

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def pair_manifest(manifest: Manifest, spec: OpenSetSpec, signer: str) -> Manifest:
    """The classifier's manifest with the open-set section, a new id and the new signer."""
    if manifest.task != "classify":
        raise ValueError(f"bundle: a benign model pairs with a classifier, not {manifest.task}")
    base = manifest.bundle_id.split("+benign-")[0]
    extra = {**manifest.extra, SECTION: spec.to_dict()}
    paired = dataclasses.replace(
        manifest,
        bundle_id=f"{base}+benign-{spec.model_sha256[:8]}",
        key_id=signer,
        extra=extra,
    )
    return Manifest.from_json(paired.to_json())  # the agent's own parser must accept it


def write_pair(out: Path, manifest_bytes: bytes, model: bytes, benign: bytes, sig: bytes) -> None:
    """The four members, stored, to a temporary file beside ``out``, fsync, rename."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_STORED) as archive:
                archive.writestr(MANIFEST, manifest_bytes)
                archive.writestr(MODEL, model)
                archive.writestr(COMPANION, benign)
                archive.writestr(SIGNATURE, sig)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def pair(
    classifier: Path, benign: bytes, spec: OpenSetSpec, private: Ed25519PrivateKey, out: Path
) -> Manifest:
    """Write the paired bundle; returns its manifest."""
    from converters.signing import sign

    raw = read_bundle(classifier)
    manifest = Manifest.from_json(raw.manifest_bytes)
    if hashlib.sha256(benign).hexdigest() != spec.model_sha256:
        raise ValueError("benign model: bytes do not match the section's sha256")
    paired = pair_manifest(manifest, spec, key_id(private.public_key()))
    data = paired.to_json()
    write_pair(out, data, raw.model_content, benign, sign(data, private))
    return paired


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``iotids openset``."""
    parser.add_argument("--bundle", required=True, type=Path, help="the classifier bundle")
    parser.add_argument("--dataset", required=True, help="dataset kind (captures, synthetic)")
    parser.add_argument("--path", required=True, help="its folder: benign steps are learned")
    parser.add_argument("--sign-key", required=True, type=Path, help="Ed25519 private key")
    parser.add_argument("--out", required=True, type=Path, help="paired bundle to write")
    parser.add_argument("--epochs", type=int, default=60, help="autoencoder epochs (60)")
    parser.add_argument(
        "--quantile",
        type=float,
        default=0.999,
        help="held-out benign score quantile that sets the threshold (0.999)",
    )


def run(args: argparse.Namespace) -> int:
    """Train the benign model on the dataset's benign windows and write the pair."""
    from agent.bundle import load_bundle
    from agent.openset import load_benign_model
    from agent.quiet import quiet_tensorflow

    quiet_tensorflow()
    from converters.signing import load_private_key
    from training.datasets import load
    from training.openset import BenignTraining, benign_windows, train_benign

    try:
        manifest = Manifest.from_json(read_bundle(args.bundle).manifest_bytes)
        step = manifest.step
        step_text = f"{int(step.size)}p" if step.kind == "packets" else f"{step.size}s"
        dataset = load(args.dataset, args.path, step=step_text)
        if dataset.feature_set.schema_id != manifest.schema_id:
            raise ValueError(f"dataset: schema {dataset.feature_set.schema_id} is not the bundle's")
        windows = benign_windows(dataset, manifest.window)
        trained = train_benign(windows, BenignTraining(epochs=args.epochs, quantile=args.quantile))
        private = load_private_key(args.sign_key)
        paired = pair(args.bundle, trained.tflite, trained.spec, private, args.out)
        check = load_bundle(args.out, [private.public_key()])
        load_benign_model(check)
    except (ValueError, OSError) as exc:
        print(f"iotids openset: {exc}", file=sys.stderr)  # noqa: T201 - the CLI talks
        return 2
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({size} bytes): {paired.bundle_id}")  # noqa: T201
    return 0
