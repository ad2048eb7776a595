"""The signature-check child: one request on stdin, one JSON answer on stdout, then exit.

Run as ``python -m agent.signature_child`` by ``agent.signature.ChildVerifier``. It imports only
``sys``, ``json``, ``base64`` and ``cryptography``: every module it loads is resident memory for
the moment it lives beside the agent (about 17 MB, most of it Python itself).
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Sequence

MAX_KEYS = 256
MAX_MANIFEST_BYTES = 1024 * 1024  # as ``agent.bundle_archive``; a test keeps them equal
# base64 and hex inflate the manifest by 4/3 and a key by 2; a little room for the JSON around
MAX_REQUEST_BYTES = MAX_MANIFEST_BYTES * 4 // 3 + MAX_KEYS * 70 + 4096


def verify_here(keys: Sequence[bytes], signature: bytes, message: bytes) -> int | None:
    """Index of the key whose signature over ``message`` this is, else None (in process)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    for i, raw in enumerate(keys):
        try:
            Ed25519PublicKey.from_public_bytes(raw).verify(signature, message)
        except (InvalidSignature, ValueError):
            continue
        return i
    return None


def serve() -> int:
    """Answer one request; exit 2 on a malformed or oversized one."""
    data = sys.stdin.buffer.read(MAX_REQUEST_BYTES + 1)
    if len(data) > MAX_REQUEST_BYTES:
        return 2
    try:
        body = json.loads(data)
        keys = [bytes.fromhex(key) for key in body["keys"]]
        signature = bytes.fromhex(body["signature"])
        message = base64.b64decode(body["message"], validate=True)
    except (ValueError, TypeError, KeyError):
        return 2
    if len(keys) > MAX_KEYS or any(len(key) != 32 for key in keys) or len(signature) != 64:
        return 2
    sys.stdout.write(json.dumps({"key": verify_here(keys, signature, message)}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(serve())
