"""SHA-256 through ``cryptography``, which the agent loads anyway to verify signatures.

``hashlib`` would map OpenSSL's ``libcrypto`` (about 3.5 MB resident) into a gateway that
otherwise never needs it: with MQTT off no ``ssl`` is imported, so these digests alone
would pull it in.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes


def sha256_hex(data: bytes) -> str:
    """The hex SHA-256 of ``data``, as ``hashlib.sha256(data).hexdigest()``."""
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    return digest.finalize().hex()
