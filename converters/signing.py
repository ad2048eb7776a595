"""Ed25519 signing keys: generate a pair, load the private half, sign a manifest.

The private key is written PEM PKCS8 with mode 0600 from the moment the file exists
(``os.open`` with ``O_EXCL``), never created readable and chmod-ed afterwards.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.bundle import key_id

logger = logging.getLogger(__name__)


def generate_keypair(prefix: str | Path) -> tuple[Path, Path, str]:
    """Write ``PREFIX.key`` (private, 0600) and ``PREFIX.pub``; returns the paths and key id."""
    private_path = Path(f"{prefix}.key")
    public_path = Path(f"{prefix}.pub")
    # ``keys/release`` on a fresh checkout: make the folder, private to its owner as ssh-keygen's
    # ~/.ssh is, rather than failing on a missing directory.
    private_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    for path in (private_path, public_path):
        if path.exists():
            raise FileExistsError(f"{path} already exists; refusing to overwrite a key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public = key.public_key()
    public_path.write_bytes(
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    ident = key_id(public)
    logger.debug("wrote %s and %s (key id %s)", private_path, public_path, ident)
    return private_path, public_path, ident


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in a PEM PKCS8 file; ValueError names the file otherwise."""
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (ValueError, TypeError):
        raise ValueError(f"signing key {path}: not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"signing key {path}: expected Ed25519, got {type(key).__name__}")
    return key


def sign(manifest_bytes: bytes, key: Ed25519PrivateKey) -> bytes:
    """Raw 64-byte Ed25519 signature over the exact manifest bytes."""
    return key.sign(manifest_bytes)
