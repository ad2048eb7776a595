"""A signed int8 flood bundle, a trusted key and a flood capture, made once per session.

The model is converted by a TensorFlow child process so the test process never imports
TensorFlow (the agent must run without it); tests that need it are marked ``tf``.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from agent.features.telemetry import telemetry_feature_set
from agent.features.traffic import TRAFFIC_V1
from tests.agent.bundles import bundle_bytes, flood_frames, manifest_for, new_key, pcap_bytes

REPO = Path(__file__).resolve().parents[2]

_BUILD = """
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
from agent.features.telemetry import telemetry_feature_set
from agent.features.traffic import TRAFFIC_V1
from tests.agent.bundles import int8_flood_model, zero_reconstruction_model
open(sys.argv[1], "wb").write(int8_flood_model(TRAFFIC_V1.width))
open(sys.argv[2], "wb").write(zero_reconstruction_model(3))  # one sensor: value, delta, age
"""


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
    """Build (once) the int8 model in a TF subprocess, then sign and write everything."""
    model_path = folder / "flood_int8.tflite"
    anomaly_path = folder / "telemetry_anomaly.tflite"
    if not model_path.exists():
        if importlib.util.find_spec("tensorflow") is None:
            pytest.skip("building the int8 test model needs TensorFlow (the [train] extra)")
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-c", _BUILD, str(model_path), str(anomaly_path)],
            check=True,
            cwd=REPO,
            capture_output=True,
            timeout=300,
        )
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
