"""Bundle loading on the agent side: every refusal is one line naming what failed."""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.bundle import (
    BundleError,
    Golden,
    Manifest,
    Scaler,
    check_compatible,
    key_id,
    load_bundle,
    load_public_key,
)
from agent.features.schema import FeatureSet
from agent.features.steps import StepSpec
from converters.bundle import wrap_tflite, write_bundle
from converters.signing import generate_keypair, load_private_key
from tests.agent.model_fixture import tiny_models

FEATURES = FeatureSet("unit", 1, tuple(f"f{i}" for i in range(8)))


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_models(tmp_path_factory.getbasetemp())


def preprocess(**changes: Any) -> dict[str, Any]:
    """The preprocessing fields of the tiny CNN (16 steps x 8 features)."""
    fields: dict[str, Any] = {
        "feature_set": FEATURES.id,
        "schema_id": FEATURES.schema_id,
        "columns": list(FEATURES.columns),
        "step": {"kind": "time", "size": 1.0},
        "window": 16,
        "model_type": "cnn",
        "task": "classify",
        "scaler": {
            "kind": "minmax",
            "min": [0.0] * 8,
            "max": [10.0] * 8,
            "clip_low": [0.0] * 8,
            "clip_high": [10.0] * 8,
        },
        "labels": ["benign", "scan", "flood"],
        "categories": {"benign": "benign", "scan": "recon", "flood": "dos"},
        "thresholds": {"scan": 0.6, "flood": 0.7},
        "threshold_calibration": {"method": "target_fpr", "target_fpr": 0.01, "n": 100},
    }
    fields.update(changes)
    return fields


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path, str]:
    return generate_keypair(tmp_path / "signer")


def make_bundle(
    tmp_path: Path, models: Path, key: Path | None, name: str = "cnn_int8", **changes: Any
) -> Path:
    manifest = tmp_path / f"{name}.json"
    manifest.write_text(json.dumps(preprocess(**changes)))
    out = tmp_path / f"{name}.bundle"
    wrap_tflite(models / f"{name}.tflite", manifest, out, sign_key=key)
    return out


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {n: archive.read(n) for n in archive.namelist()}


def rezip(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return out.getvalue()


def test_signed_bundle_loads_and_runs(tmp_path: Path, models: Path, keys: Any) -> None:
    private, public, ident = keys
    path = make_bundle(tmp_path, models, private)
    bundle = load_bundle(path, [public.read_bytes()])
    assert bundle.signer == ident
    assert bundle.manifest.key_id == ident
    assert bundle.manifest.input.dtype == "int8"
    quant = bundle.model.input_quantization
    assert quant is not None
    assert bundle.manifest.input.scale == quant.scale
    assert bundle.manifest.labels == ("benign", "scan", "flood")
    assert bundle.manifest.thresholds == {"benign": 0.5, "scan": 0.6, "flood": 0.7}
    raw = np.full((2, 16, 8), 20.0)
    scaled = bundle.manifest.prepare(raw)
    assert scaled.shape == (2, 16, 8, 1)
    assert np.all(scaled == 1.0)  # clipped to clip_high, then scaled
    assert bundle.model.predict(scaled).shape == (2, 3)
    # the same bytes load from memory, with the key given as an object
    again = load_bundle(path.read_bytes(), [load_public_key(public)])
    assert again.manifest == bundle.manifest


def test_manifest_round_trips(tmp_path: Path, models: Path, keys: Any) -> None:
    path = make_bundle(tmp_path, models, keys[0])
    manifest_bytes = members(path)["manifest.json"]
    manifest = Manifest.from_json(manifest_bytes)
    assert manifest.to_json() == manifest_bytes
    assert json.loads(manifest_bytes)["format"] == 1


def test_unsigned_bundle_is_refused(tmp_path: Path, models: Path, keys: Any) -> None:
    path = make_bundle(tmp_path, models, None)
    with pytest.raises(BundleError, match=r"^bundle signature: unsigned bundle"):
        load_bundle(path, [keys[1].read_bytes()])


def test_untrusted_signer_is_named(tmp_path: Path, models: Path, keys: Any) -> None:
    stranger, _, stranger_id = generate_keypair(tmp_path / "stranger")
    path = make_bundle(tmp_path, models, stranger)
    with pytest.raises(BundleError, match=f"signed by untrusted key {stranger_id}$"):
        load_bundle(path, [keys[1].read_bytes()])


def test_no_trusted_keys_refuses(tmp_path: Path, models: Path, keys: Any) -> None:
    path = make_bundle(tmp_path, models, keys[0])
    with pytest.raises(BundleError, match="no trusted keys"):
        load_bundle(path, [])


def test_tampered_manifest_is_refused(tmp_path: Path, models: Path, keys: Any) -> None:
    path = make_bundle(tmp_path, models, keys[0])
    entries = members(path)
    entries["manifest.json"] = entries["manifest.json"].replace(b'"scan": 0.6', b'"scan": 0.9')
    with pytest.raises(BundleError, match=r"invalid for trusted key .* altered"):
        load_bundle(rezip(entries), [keys[1].read_bytes()])


def test_tampered_model_is_refused(tmp_path: Path, models: Path, keys: Any) -> None:
    path = make_bundle(tmp_path, models, keys[0])
    entries = members(path)
    model = bytearray(entries["model.tflite"])
    model[-10] ^= 0xFF
    entries["model.tflite"] = bytes(model)
    with pytest.raises(BundleError, match=r"^bundle model: sha256 mismatch"):
        load_bundle(rezip(entries), [keys[1].read_bytes()])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x89PNG\r\n\x1a\n not a bundle", "not a zip archive"),
        ({"model.tflite": b"x"}, "missing manifest.json"),
        ({"manifest.json": b"{}", "model.tflite": b"x", "run.sh": b"rm"}, "unexpected member"),
    ],
)
def test_wrong_files_are_refused(content: Any, message: str) -> None:
    data = content if isinstance(content, bytes) else rezip(content)
    with pytest.raises(BundleError, match=message):
        load_bundle(data, [Ed25519PrivateKey.generate().public_key()])


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="bundle file: cannot read"):
        load_bundle(tmp_path / "absent.bundle", [])


def _resigned(tmp_path: Path, path: Path, private: Path, **changes: Any) -> Path:
    """The bundle with manifest fields replaced and properly re-signed."""
    entries = members(path)
    manifest = dataclasses.replace(Manifest.from_json(entries["manifest.json"]), **changes)
    data = manifest.to_json()
    out = tmp_path / "resigned.bundle"
    write_bundle(out, data, entries["model.tflite"], load_private_key(private).sign(data))
    return out


def test_golden_vectors_that_do_not_reproduce_are_refused(
    tmp_path: Path, models: Path, keys: Any
) -> None:
    path = make_bundle(tmp_path, models, keys[0])
    golden = Manifest.from_json(members(path)["manifest.json"]).golden
    wrong = Golden(golden.inputs, golden.outputs + 0.25, golden.atol)
    bad = _resigned(tmp_path, path, keys[0], golden=wrong)
    with pytest.raises(BundleError, match=r"^bundle golden vectors: max error 0.25"):
        load_bundle(bad, [keys[1].read_bytes()])


def test_declared_dtype_must_match_the_model(tmp_path: Path, models: Path, keys: Any) -> None:
    path = make_bundle(tmp_path, models, keys[0])
    manifest = Manifest.from_json(members(path)["manifest.json"])
    bad = _resigned(
        tmp_path, path, keys[0], input=dataclasses.replace(manifest.input, zero_point=3)
    )
    with pytest.raises(BundleError, match=r"^bundle model: input .* != manifest"):
        load_bundle(bad, [keys[1].read_bytes()])


def test_malformed_manifest_names_the_key(tmp_path: Path, models: Path, keys: Any) -> None:
    path = make_bundle(tmp_path, models, keys[0])
    entries = members(path)
    raw = json.loads(entries["manifest.json"])
    raw["scaler"]["min"] = [0.0] * 7
    entries["manifest.json"] = json.dumps(raw).encode()
    entries["manifest.sig"] = load_private_key(keys[0]).sign(entries["manifest.json"])
    with pytest.raises(BundleError, match=r"^bundle manifest: scaler.min: expected 8 values"):
        load_bundle(rezip(entries), [keys[1].read_bytes()])


def test_check_compatible(tmp_path: Path, models: Path, keys: Any) -> None:
    manifest = load_bundle(make_bundle(tmp_path, models, keys[0]), [keys[1]]).manifest
    check_compatible(manifest, FEATURES, StepSpec(), 16)
    other = FeatureSet("unit", 1, (*FEATURES.columns[1:], FEATURES.columns[0]))
    with pytest.raises(BundleError, match="bundle schema: model wants unit-v1"):
        check_compatible(manifest, other, StepSpec(), 16)
    with pytest.raises(BundleError, match="bundle step"):
        check_compatible(manifest, FEATURES, StepSpec("packets", 100), 16)
    with pytest.raises(BundleError, match="bundle window"):
        check_compatible(manifest, FEATURES, StepSpec(), 8)


def test_scaler_clips_and_handles_constant_columns() -> None:
    scaler = Scaler("minmax", (0.0, 5.0), (10.0, 5.0), (0.0, 0.0), (8.0, 9.0))
    out = scaler.transform(np.array([[5.0, 5.0], [20.0, 7.0], [-3.0, 1.0]]))
    assert out.dtype == np.float32
    assert np.allclose(out, [[0.5, 0.0], [0.8, 0.0], [0.0, 0.0]])


def test_public_keys_load_from_pem_or_raw(keys: Any) -> None:
    _, public, ident = keys
    pem_key = load_public_key(public)
    raw = pem_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert key_id(load_public_key(raw)) == ident == key_id(pem_key)
    with pytest.raises(ValueError, match="neither PEM nor 32 raw bytes"):
        load_public_key(b"-----BEGIN NONSENSE-----")


def test_pem_keys_read_without_the_general_loader_match_it() -> None:
    """Plain Ed25519 PEM is read by hand (the loader's imports cost memory); other PEM still
    goes through cryptography's loader and is refused as before."""
    from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key

    private = Ed25519PrivateKey.generate()
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    expected = private.public_key().public_bytes_raw()
    for variant in (pem, pem.replace(b"\n", b"\r\n"), b"\n  " + pem + b"\n\n"):
        assert load_public_key(variant).public_bytes_raw() == expected
    ec = generate_private_key(SECP256R1()).public_key()
    ec_pem = ec.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(ValueError, match="expected Ed25519"):
        load_public_key(ec_pem)
    broken = pem.replace(pem.splitlines()[1][:8], b"!!!!!!!!")
    with pytest.raises(ValueError, match="neither PEM nor 32 raw bytes"):
        load_public_key(broken)
