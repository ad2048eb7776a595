"""Ed25519 public keys a gateway trusts: loading them (PEM or raw) and their short ids.

Kept apart from ``agent.bundle`` so key handling reads in one place; ``agent.bundle``
re-exports these names. The running agent holds keys as their raw 32 bytes and never imports
``cryptography`` (about 6 MB resident): a plain PEM key is read here, and signatures are checked
in a short-lived child (``agent.signature``). Only a key in another PEM form loads it.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import TYPE_CHECKING

from agent.digest import sha256_hex

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

# The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): the 32-byte key follows.
_ED25519_SPKI = bytes.fromhex("302a300506032b6570032100")
_PEM_HEAD = b"-----BEGIN PUBLIC KEY-----"
_PEM_TAIL = b"-----END PUBLIC KEY-----"


def key_id(public_key: Ed25519PublicKey | bytes) -> str:
    """First 16 hex digits of sha256 over the raw 32-byte public key."""
    return sha256_hex(raw_key(public_key))[:16]


def _ed25519_pem(data: bytes) -> bytes | None:
    """The raw key of a plain PEM Ed25519 public key (what ``iotids keys`` writes), else None.

    Read here because cryptography's general PEM loader imports its SSH, RSA and cipher
    modules (~0.7 MB resident on the gateway); anything else still goes through it.
    """
    text = data.strip()
    if not (text.startswith(_PEM_HEAD) and text.endswith(_PEM_TAIL)):
        return None
    try:
        der = base64.b64decode(
            b"".join(text[len(_PEM_HEAD) : -len(_PEM_TAIL)].split()), validate=True
        )
    except binascii.Error:
        return None
    if len(der) == len(_ED25519_SPKI) + 32 and der.startswith(_ED25519_SPKI):
        return der[len(_ED25519_SPKI) :]
    return None


def raw_public_key(source: str | Path | bytes) -> bytes:
    """The raw 32 bytes of an Ed25519 public key from a PEM or raw file / bytes."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    if len(data) == 32:
        return data
    raw = _ed25519_pem(data)
    if raw is not None:
        return raw
    return load_public_key(data).public_bytes_raw()


def raw_key(key: Ed25519PublicKey | str | Path | bytes) -> bytes:
    """A loaded key's raw 32 bytes; a PEM or raw file / bytes read."""
    if isinstance(key, (str, Path, bytes)):
        return raw_public_key(key)
    return key.public_bytes_raw()


def load_public_key(source: str | Path | bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file / bytes or a raw 32-byte file / bytes."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    if len(data) == 32:
        return Ed25519PublicKey.from_public_bytes(data)
    raw = _ed25519_pem(data)
    if raw is not None:
        return Ed25519PublicKey.from_public_bytes(raw)
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise ValueError("public key: neither PEM nor 32 raw bytes") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"public key: expected Ed25519, got {type(key).__name__}")
    return key
