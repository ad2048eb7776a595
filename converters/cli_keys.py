"""``iotids keys generate --out PREFIX``: an Ed25519 key pair for signing bundles."""

from __future__ import annotations

import argparse
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``generate`` action and its options."""
    parser.add_argument("action", choices=["generate"], help="what to do with keys")
    parser.add_argument("--out", required=True, help="writes PREFIX.key and PREFIX.pub")


def run(args: argparse.Namespace) -> int:
    """Generate the pair and print the key id that bundles will name."""
    from converters.signing import generate_keypair

    try:
        private_path, public_path, ident = generate_keypair(args.out)
    except OSError as exc:
        print(f"iotids keys: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    print(f"key id {ident}: private {private_path} (0600), public {public_path}")  # noqa: T201
    return 0
