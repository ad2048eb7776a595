"""Generated test material for the agent: pcap bytes, a tiny int8 model and signed bundles.

Everything is made in code: frames are packed by hand, the model is a Keras dense layer with
hand-set weights (it calls a step a flood when its packet count is high), converted to int8 by
TFLite's converter, and signed with a fresh Ed25519 key. Only ``int8_flood_model`` needs
TensorFlow; the rest runs with the agent's own dependencies.
"""

from __future__ import annotations

import functools
import hashlib
import io
import struct
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.bundle import Golden, Manifest, Scaler, TensorSpec, key_id
from agent.features.schema import FeatureSet
from agent.features.steps import StepSpec
from agent.runtime import Model

PACKETS_CEILING = 1000.0  # scaler max of the packet-count column: a flood saturates it
WINDOW = 4


# --- frames and captures ----------------------------------------------------------------------


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    return int(~(total + (total >> 16)) & 0xFFFF)


def ipv4(src: str, dst: str, proto: int, payload: bytes, ttl: int = 64) -> bytes:
    """An IPv4 packet (no options) around ``payload``."""
    s = bytes(int(x) for x in src.split("."))
    d = bytes(int(x) for x in dst.split("."))
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, ttl, proto, 0, s, d)
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return header + payload


def tcp(sport: int, dport: int, flags: int = 0x02, payload: bytes = b"") -> bytes:
    """A TCP segment (checksum left 0: the decoder never checks it)."""
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, flags, 64240, 0, 0) + payload


def udp(sport: int, dport: int, payload: bytes = b"") -> bytes:
    """A UDP datagram."""
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def ethernet(packet: bytes, ethertype: int = 0x0800) -> bytes:
    """An Ethernet II frame around an IP packet."""
    return (
        b"\x02\x00\x00\x00\x00\x02"
        + b"\x02\x00\x00\x00\x00\x01"
        + struct.pack("!H", ethertype)
        + packet
    )


def pcap_bytes(frames: list[tuple[float, bytes]], linktype: int = 1) -> bytes:
    """A classic little-endian microsecond pcap file."""
    out = io.BytesIO()
    out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype))
    for ts, frame in frames:
        sec = int(ts)
        usec = round((ts - sec) * 1e6)
        out.write(struct.pack("<IIII", sec, usec, len(frame), len(frame)))
        out.write(frame)
    return out.getvalue()


def flood_frames(
    *,
    t0: float = 1_700_000_000.0,
    calm_s: int = 12,
    flood_s: int = 8,
    calm_after_s: int = 12,
    flood_rate: int = 2000,
) -> tuple[list[tuple[float, bytes]], float]:
    """Calm UDP telemetry, a SYN flood from many sources to port 80, calm again.

    Returns the frames and the time of the flood's first packet.
    """
    frames: list[tuple[float, bytes]] = []
    benign = ethernet(ipv4("192.168.1.10", "192.168.1.1", 17, udp(40000, 1883, b"x" * 20)))
    total = calm_s + flood_s + calm_after_s
    for second in range(total):
        for k in range(5):
            frames.append((t0 + second + k * 0.2, benign))
    flood_start = t0 + calm_s + 0.01
    for i in range(flood_rate * flood_s):
        src = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
        frame = ethernet(ipv4(src, "192.168.1.1", 6, tcp(1024 + i % 50000, 80)))
        frames.append((flood_start + i / flood_rate, frame))
    frames.sort(key=lambda f: f[0])
    return frames, flood_start


# --- model and bundle -------------------------------------------------------------------------


@functools.cache
def int8_flood_model(width: int, window: int = WINDOW) -> bytes:
    """A full-int8 TFLite classifier: ``flood`` when the window's mean scaled packet count > 0.5."""
    import tensorflow as tf

    inputs = tf.keras.Input((window, width))
    flat = tf.keras.layers.Flatten()(inputs)
    dense = tf.keras.layers.Dense(2)
    logits = dense(flat)
    outputs = tf.keras.layers.Softmax()(logits)
    model = tf.keras.Model(inputs, outputs)
    kernel = np.zeros((window * width, 2), np.float32)
    kernel[np.arange(window) * width, 1] = 12.0 / window  # column 0 is "packets"
    dense.set_weights([kernel, np.array([0.0, -6.0], np.float32)])
    rng = np.random.default_rng(0)

    def representative() -> Any:
        for _ in range(64):
            yield [rng.uniform(0, 1, (1, window, width)).astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return bytes(converter.convert())


def zero_reconstruction_model(width: int, window: int = WINDOW) -> bytes:
    """A float32 "autoencoder" that always reconstructs zeros: its error is the input's energy."""
    import tensorflow as tf

    inputs = tf.keras.Input((window, width))
    dense = tf.keras.layers.Dense(window * width)
    outputs = tf.keras.layers.Reshape((window, width))(dense(tf.keras.layers.Flatten()(inputs)))
    model = tf.keras.Model(inputs, outputs)
    dense.set_weights(
        [
            np.zeros((window * width, window * width), np.float32),
            np.zeros(window * width, np.float32),
        ]
    )
    return bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())


def new_key(directory: Path) -> tuple[Ed25519PrivateKey, Path]:
    """A fresh signing key and its public half written as PEM."""
    key = Ed25519PrivateKey.generate()
    public = directory / f"trusted-{key_id(key.public_key())}.pub"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key, public


def manifest_for(
    model_content: bytes,
    feature_set: FeatureSet,
    *,
    window: int = WINDOW,
    step: StepSpec | None = None,
    bundle_id: str = "flood-int8-test",
    signer: Ed25519PrivateKey | None = None,
    task: str = "classify",
    labels: tuple[str, ...] = ("benign", "flood"),
    categories: dict[str, str] | None = None,
    thresholds: dict[str, float] | None = None,
    maxima: np.ndarray | None = None,
    version: int = 0,
) -> Manifest:
    """A manifest (the flood model's by default), golden vectors measured on the interpreter."""
    model = Model(model_content)
    width = feature_set.width
    if maxima is None:
        maxima = np.full(width, 1.0)
        maxima[0] = PACKETS_CEILING
    golden_in = np.random.default_rng(1).uniform(0, 1, (3, window, width)).astype(np.float32)
    quant_in, quant_out = model.input_quantization, model.output_quantization
    return Manifest(
        bundle_id=bundle_id,
        created="2026-01-01T00:00:00Z",
        model_type="dnn",
        task=task,
        feature_set=feature_set.id,
        schema_id=feature_set.schema_id,
        columns=feature_set.columns,
        step=step or StepSpec(),
        window=window,
        input_shape=(window, width),
        output_shape=model.output_shape,
        input=TensorSpec.of(model.input_dtype, quant_in),
        output=TensorSpec.of(model.output_dtype, quant_out),
        quantization="int8" if quant_in is not None else "float32",
        scaler=Scaler(
            "minmax",
            tuple([0.0] * width),
            tuple(float(m) for m in maxima),
            tuple([0.0] * width),
            tuple(float(m) for m in maxima),
        ),
        labels=labels,
        categories=categories if categories is not None else {"benign": "benign", "flood": "dos"},
        thresholds=thresholds if thresholds is not None else {"flood": 0.5},
        threshold_calibration={},
        metrics={"f1": 1.0},
        golden=Golden(golden_in, model.predict(golden_in), 1e-4),
        model_sha256=hashlib.sha256(model_content).hexdigest(),
        model_size=len(model_content),
        tools={"test": "1"},
        runtimes={},
        key_id=key_id(signer.public_key()) if signer is not None else None,
        version=version,
    )


def bundle_bytes(
    manifest: Manifest, model_content: bytes, signer: Ed25519PrivateKey | None
) -> bytes:
    """Zip a manifest, model and (when a signer is given) signature into a bundle."""
    manifest_json = manifest.to_json()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("manifest.json", manifest_json)
        archive.writestr("model.tflite", model_content)
        if signer is not None:
            archive.writestr("manifest.sig", signer.sign(manifest_json))
    return out.getvalue()


def tampered(bundle: bytes) -> bytes:
    """The same bundle with one byte of its manifest changed after signing."""
    source = zipfile.ZipFile(io.BytesIO(bundle))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for name in source.namelist():
            data = source.read(name)
            if name == "manifest.json":
                data = data.replace(b'"f1": 1.0', b'"f1": 0.9')
            archive.writestr(name, data)
    return out.getvalue()


def with_fields(manifest: Manifest, **changes: Any) -> Manifest:
    """A copy of a manifest with some fields changed (wrong schema, other window...)."""
    return replace(manifest, **changes)
