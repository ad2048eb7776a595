"""SHA-256 through CPython's own ``_sha256`` module, not ``hashlib``.

``hashlib`` would map OpenSSL's ``libcrypto`` (about 3.5 MB resident) into a gateway that
otherwise never needs it: with MQTT off no ``ssl`` is imported, so these digests alone would
pull it in. Where that module is missing (another interpreter), ``hashlib`` serves.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Protocol


class _Hash(Protocol):
    def hexdigest(self) -> str: ...


def _constructor() -> Callable[[bytes], _Hash]:
    try:
        module = importlib.import_module("_sha256")  # CPython <= 3.11; 3.12 renamed it _sha2
    except ImportError:
        try:
            module = importlib.import_module("_sha2")
        except ImportError:
            import hashlib

            return hashlib.sha256
    sha256: Callable[[bytes], _Hash] = module.sha256
    return sha256


_SHA256 = _constructor()


def sha256_hex(data: bytes) -> str:
    """The hex SHA-256 of ``data``, as ``hashlib.sha256(data).hexdigest()``."""
    return _SHA256(data).hexdigest()
