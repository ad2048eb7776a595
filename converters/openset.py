"""Pair a classifier bundle with a benign model: one bundle, one signature over both.

The classifier's manifest gains ``extra["openset"]`` (``agent.openset.OpenSetSpec``: the
benign model's sha256 and size, scaler, error scale, threshold and golden vectors) and the zip
gains the member ``anomaly.tflite``. The pair is re-signed with the given key and gets a new
bundle id (``<classifier id>+benign-<8 hex>``), so a device can tell a paired bundle from the
classifier alone. Written atomically; proven with the agent's own loader before it is kept.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
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
