"""A signed flood bundle on 20p/1s steps, padded or not (the agent tests' int8 flood model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agent.bundle import Bundle, load_bundle
from agent.features.steps import StepSpec
from agent.features.traffic import TRAFFIC_V1
from tests.agent.bundles import bundle_bytes, manifest_for, new_key, with_fields

STEP = StepSpec.parse("20p/1s")


def padded_bundle(folder: Path, padding: str, model: bytes) -> tuple[Path, Path]:
    """The flood model on 20p/1s steps: flood when the window's mean scaled packet count > 0.5.

    Returns the bundle's path and its signer's public key.
    """
    width = TRAFFIC_V1.width
    key, public = new_key(folder)
    maxima = np.full(width, 1.0)
    maxima[0] = 25.0  # a full 20-packet step scales to 0.8: away from the 0.5 boundary
    manifest = manifest_for(
        model, TRAFFIC_V1, step=STEP, signer=key, maxima=maxima, bundle_id=f"flood-{padding}"
    )
    path = folder / f"flood-{padding}.bundle"
    path.write_bytes(bundle_bytes(with_fields(manifest, padding=padding), model, key))
    return path, public


def load_padded(folder: Path, padding: str, model: bytes) -> Bundle:
    """``padded_bundle`` written into ``folder`` (created) and loaded as the agent does."""
    folder.mkdir(parents=True, exist_ok=True)
    path, public = padded_bundle(folder, padding, model)
    return load_bundle(path, [public.read_bytes()])
