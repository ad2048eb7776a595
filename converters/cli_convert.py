"""``iotids convert MODEL --quantize MODE --out BUNDLE``: a trained model into a signed bundle."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

MODES = ("int8", "float16", "dynamic", "float32")


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``iotids convert``."""
    parser.add_argument(
        "model", nargs="?", type=Path, help="training output folder, .keras file or SavedModel dir"
    )
    parser.add_argument("--quantize", choices=MODES, default="int8", help="default: int8")
    parser.add_argument("-o", "--out", required=True, type=Path, help="bundle file to write")
    parser.add_argument(
        "--representative", type=Path, help="scaled inputs .npz (x) for int8 calibration"
    )
    # A str, not a Path: Path("") is ".", which would hide an empty value from the check below.
    parser.add_argument(
        "--sign-key", metavar="KEY", help="Ed25519 private key (iotids keys generate)"
    )
    parser.add_argument(
        "--manifest", type=Path, help="preprocess fields (JSON) for a bare .keras / SavedModel"
    )
    parser.add_argument("--tflite", type=Path, help="wrap this third-party .tflite instead")
    parser.add_argument(
        "--version",
        type=_version,
        help="bundle version, an integer agents use to refuse downgrades "
        "(default: the UTC time as YYYYMMDDHHMMSS)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")


def _version(text: str) -> int:
    """A bundle version: an integer 0 .. 2**63-1."""
    from agent.bundle import MAX_VERSION

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value <= MAX_VERSION:
        raise argparse.ArgumentTypeError(f"must be 0..{MAX_VERSION}, got {value}")
    return value


def sign_key_problem(raw: str | None) -> str | None:
    """Why ``--sign-key`` cannot name a private key file, or None when it may.

    Checked before TensorFlow loads, so ``--sign-key ''`` (an unset shell variable) is one line
    naming the option, not a conversion that ends in ``Is a directory: '.'``.
    """
    if raw is None:
        return None
    if not raw.strip():
        return "--sign-key: empty path; give the private key (iotids keys generate -o keys/release)"
    path = Path(raw)
    if path.is_dir():
        return f"--sign-key: {raw} is a folder; give the PREFIX.key file inside it"
    if not path.exists():
        return (
            f"--sign-key: {raw} does not exist (iotids keys generate -o PREFIX writes PREFIX.key)"
        )
    return None


def run(args: argparse.Namespace) -> int:
    """Convert (or wrap), write the bundle atomically, and say what was written."""
    problem = sign_key_problem(args.sign_key)
    if problem is not None:
        print(f"iotids convert: {problem}", file=sys.stderr)  # noqa: T201
        return 2
    from agent.quiet import quiet_tensorflow

    quiet_tensorflow()
    from converters.bundle import pack, wrap_tflite

    sign_key = None if args.sign_key is None else Path(args.sign_key)

    try:
        if args.tflite is not None:
            if args.manifest is None:
                raise ValueError("--tflite needs --manifest M.json (feature set, labels, scaler)")
            result = wrap_tflite(
                args.tflite, args.manifest, args.out, sign_key=sign_key, version=args.version
            )
        elif args.model is None:
            raise ValueError("give MODEL (training folder, .keras or SavedModel) or --tflite")
        else:
            result = pack(
                args.model,
                args.quantize,
                args.out,
                sign_key=sign_key,
                representative=args.representative,
                manifest=args.manifest,
                version=args.version,
            )
    except (ValueError, OSError) as exc:
        print(f"iotids convert: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    manifest = result.manifest
    size = result.path.stat().st_size
    if not result.signed:
        print(  # noqa: T201
            "iotids convert: warning: bundle is UNSIGNED; agents will refuse it (use --sign-key)",
            file=sys.stderr,
        )
    if args.json:
        summary = {
            "path": str(result.path),
            "bytes": size,
            "bundle_id": manifest.bundle_id,
            "version": manifest.version,
            "signed": result.signed,
        }
        print(json.dumps(summary))  # noqa: T201
        return 0
    print(  # noqa: T201
        f"wrote {result.path} ({size} bytes): {manifest.bundle_id} version {manifest.version}"
    )
    return 0
