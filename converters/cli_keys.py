"""``iotids keys generate -o PREFIX``: an Ed25519 key pair for signing bundles."""

from __future__ import annotations

import argparse
import json
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``generate`` action and its options."""
    parser.add_argument("action", choices=["generate"], help="what to do with keys")
    parser.add_argument(
        "-o",
        "--out",
        required=True,
        metavar="PREFIX",
        help="writes PREFIX.key and PREFIX.pub (missing folders are made, mode 0700)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")


def run(args: argparse.Namespace) -> int:
    """Generate the pair and print the key id that bundles will name."""
    from converters.signing import generate_keypair

    if not str(args.out).strip():
        print("iotids keys: --out: empty prefix; give one such as keys/release", file=sys.stderr)  # noqa: T201
        return 2
    try:
        private_path, public_path, ident = generate_keypair(args.out)
    except OSError as exc:
        print(f"iotids keys: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    if args.json:
        result = {"key_id": ident, "private": str(private_path), "public": str(public_path)}
        print(json.dumps(result))  # noqa: T201
    else:
        print(f"wrote {private_path} (private, 0600) and {public_path}: key id {ident}")  # noqa: T201
    return 0
