"""A signed int8 flood bundle, a trusted key and a flood capture, made once per session.

The models are the committed ``models/flood_int8.tflite`` and ``models/telemetry_anomaly.tflite``
(regenerate with ``python -m tests.agent.models.make_models tests/agent/models``), so these tests
run without TensorFlow; only keys, manifests and captures are made here.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.features.telemetry import telemetry_feature_set
from agent.features.traffic import TRAFFIC_V1
from tests.agent.bundles import bundle_bytes, flood_frames, manifest_for, new_key, pcap_bytes
from tests.agent.models.make_models import HERE as MODELS

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class FloodKit:
    """Paths and bytes the agent tests share."""

    folder: Path
    model: bytes  # the .tflite
    bundle: Path
    public_key: Path
    capture: Path
    flood_start: float
    signer: object  # Ed25519PrivateKey
    anomaly_bundle: Path  # telemetry-v1 ["temp"], float32 zero-reconstruction model


def flood_kit(folder: Path) -> FloodKit:
    """Copy (once) the committed models, then sign and write everything."""
    model_path = folder / "flood_int8.tflite"
    anomaly_path = folder / "telemetry_anomaly.tflite"
    if not model_path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(MODELS / "flood_int8.tflite", model_path)
        shutil.copyfile(MODELS / "telemetry_anomaly.tflite", anomaly_path)
    model = model_path.read_bytes()
    key, public = new_key(folder)
    bundle = folder / "flood.bundle"
    bundle.write_bytes(bundle_bytes(manifest_for(model, TRAFFIC_V1, signer=key), model, key))
    frames, flood_start = flood_frames()
    capture = folder / "flood.pcap"
    capture.write_bytes(pcap_bytes(frames))
    anomaly = folder / "anomaly.bundle"
    anomaly_model = anomaly_path.read_bytes()
    sensors = telemetry_feature_set(["temp"])
    maxima = np.array([100.0, 100.0, 60.0])  # temp value, delta, staleness (s)
    anomaly_manifest = manifest_for(
        anomaly_model,
        sensors,
        bundle_id="boiler-anomaly",
        signer=key,
        task="anomaly",
        labels=("anomaly",),
        categories={"anomaly": "process"},
        thresholds={"anomaly": 0.3},  # mean square of scaled inputs: 20 °C ~0.01, 100 °C ~0.33
        maxima=maxima,
    )
    anomaly.write_bytes(bundle_bytes(anomaly_manifest, anomaly_model, key))
    return FloodKit(folder, model, bundle, public, capture, flood_start, key, anomaly)
