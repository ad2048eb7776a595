"""Paired bundles for the open-set and calibration tests, built on the flood kit.

The classifier is the flood kit's int8 flood model. The benign model is a float32 "autoencoder"
that reconstructs zeros (built once in a TensorFlow child process, like the flood model), so
its score is the energy of the window summary: with a benign scaler that only reads the packet
count (every other feature's range is huge), calm traffic is near benign and a flood is far.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent import calibration as cal
from agent.bundle import Scaler
from agent.features.traffic import TRAFFIC_V1
from agent.openset import OpenSetSpec, summarize
from agent.runtime import Model
from converters.openset import pair
from tests.agent.bundles import bundle_bytes, flood_frames, manifest_for, pcap_bytes
from tests.agent.flood_bundle import REPO, FloodKit

_BUILD = """
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np
import tensorflow as tf
width = int(sys.argv[2])
inputs = tf.keras.Input((width,))
dense = tf.keras.layers.Dense(width)
model = tf.keras.Model(inputs, dense(inputs))
dense.set_weights([np.zeros((width, width), np.float32), np.zeros(width, np.float32)])
open(sys.argv[1], "wb").write(tf.lite.TFLiteConverter.from_keras_model(model).convert())
"""
PACKETS_MAX = 100.0  # the benign scaler's packet count range: calm 5/s, a flood saturates it
# score = mean over 3F of the summary squared: calm ~4.8e-5, a flood's window up to 3/3F ~0.019
THRESHOLD = 0.005


def zero_benign_model(folder: Path) -> bytes:
    """The zero-reconstruction benign model of traffic-v1 summaries (3 x 52 -> 3 x 52)."""
    path = folder / "zero_benign.tflite"
    if not path.exists():
        subprocess.run(
            [sys.executable, "-c", _BUILD, str(path), str(3 * TRAFFIC_V1.width)],
            check=True,
            cwd=REPO,
            capture_output=True,
            timeout=300,
        )
    return path.read_bytes()


def benign_spec(model: bytes, threshold: float = THRESHOLD) -> OpenSetSpec:
    """The signed section for the zero model: only the packet count is in range."""
    import hashlib

    width = TRAFFIC_V1.width
    high = np.full(width, 1e12)
    high[0] = PACKETS_MAX
    scaler = Scaler("minmax", (0.0,) * width, tuple(high), (0.0,) * width, tuple(high))
    golden_in = summarize(np.random.default_rng(2).uniform(0, 1, (2, 4, width)).astype("f4"))
    return OpenSetSpec(
        model_sha256=hashlib.sha256(model).hexdigest(),
        model_size=len(model),
        scaler=scaler,
        error_scale=(1.0,) * (3 * width),
        threshold=threshold,
        golden_inputs=golden_in,
        golden_outputs=Model(model).predict(golden_in),
        golden_atol=1e-4,
        calibration={"method": "test"},
    )


@dataclass(frozen=True)
class PairKit:
    """Paired bundles over the flood kit's classifier."""

    paired: Path  # flood classifier + benign model at THRESHOLD
    deaf: Path  # the benign model's threshold so high that nothing is far from benign
    unsure: Path  # the classifier's flood threshold above 1: never confident
    long_capture: Path  # 200 s calm, 8 s SYN flood, 100 s calm
    long_flood_start: float
    benign_model: bytes


def pair_kit(kit: FloodKit, folder: Path) -> PairKit:
    """Build the paired bundles (signed with the flood kit's key) and a long capture."""
    folder.mkdir(parents=True, exist_ok=True)
    model = zero_benign_model(kit.folder)
    unsure_classifier = folder / "unsure-classifier.bundle"
    manifest = manifest_for(
        kit.model, TRAFFIC_V1, signer=kit.signer, thresholds={"flood": 1.5}, bundle_id="unsure"
    )
    unsure_classifier.write_bytes(bundle_bytes(manifest, kit.model, kit.signer))  # type: ignore[arg-type]
    out = {}
    for name, classifier, threshold in (
        ("paired", kit.bundle, THRESHOLD),
        ("deaf", kit.bundle, 1e6),
        ("unsure", unsure_classifier, THRESHOLD),
    ):
        path = folder / f"{name}.bundle"
        pair(classifier, model, benign_spec(model, threshold), kit.signer, path)  # type: ignore[arg-type]
        out[name] = path
    frames, start = flood_frames(calm_s=200, flood_s=8, calm_after_s=100)
    capture = folder / "long.pcap"
    capture.write_bytes(pcap_bytes(frames))
    return PairKit(out["paired"], out["deaf"], out["unsure"], capture, start, model)


def calibrating_config(
    kit: FloodKit, pairs: PairKit, state: Path, calibration: dict[str, Any]
) -> dict[str, Any]:
    """An agent config replaying the pair's long capture (its flood included) with MQTT off,
    the pair as its one model and ``calibration`` as its ``[calibration]`` table."""
    return {
        "agent": {
            "device_id": "gw-test",
            "state_dir": str(state),
            "trusted_keys": [str(kit.public_key)],
        },
        "mqtt": {"enabled": False},
        "sources": [{"name": "lan", "kind": "pcap", "path": str(pairs.long_capture)}],
        "models": [{"name": "cnn", "bundle": str(pairs.paired), "source": "lan"}],
        "calibration": calibration,
    }


def compute_site(probabilities: Any, anomaly: Any = None, **kw: Any) -> cal.SiteCalibration:
    """``calibration.compute`` on a two-label site (``flood`` watched, signed at 0.5; a benign
    model's signed floor 1 when ``anomaly`` is given); ``kw`` overrides any argument."""
    args: dict[str, Any] = {
        "bundle_id": "b",
        "labels": ("benign", "flood"),
        "watched": (1,),
        "signed": (0.5, 0.5),
        "probabilities": probabilities,
        "anomaly": anomaly,
        "anomaly_floor": None if anomaly is None else 1.0,
        "seconds": float(len(probabilities)),
        "target_per_day": 1.0,
    }
    return cal.compute(**(args | kw))
