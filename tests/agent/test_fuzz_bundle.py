"""Hypothesis against the bundle reader: mutated archives, and mutated manifests signed anyway.

A bundle arrives on ``model/set`` from anyone who may publish there, so ``read_bundle`` sees any
bytes, and a manifest signed by a trusted key (a release pipeline gone wrong) still must not
crash the agent. Nothing may escape ``load_bundle`` but BundleError, within DEADLINE per input.
The model member here is not a real model: these inputs stop at or before loading it.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.bundle import BundleError, Golden, Manifest, Scaler, TensorSpec, key_id, load_bundle
from agent.features.steps import StepSpec
from tests.agent.test_fuzz_inputs import EXAMPLES, edits

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=timedelta(seconds=2),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SIGNER = Ed25519PrivateKey.generate()
PUBLIC = SIGNER.public_key()
MODEL = b"TFL3" + bytes(range(256)) * 2  # looks like a model to nothing but its hash


def _manifest_json() -> bytes:
    width, window = 3, 2
    golden = np.zeros((1, window, width), np.float32)
    manifest = Manifest(
        bundle_id="fuzz",
        created="2026-01-01T00:00:00Z",
        model_type="dnn",
        task="classify",
        feature_set="telemetry-v1",
        schema_id="0" * 16,
        columns=("a.value", "a.delta", "a.staleness_s"),
        step=StepSpec(),
        window=window,
        input_shape=(window, width),
        output_shape=(1, 2),
        input=TensorSpec("float32"),
        output=TensorSpec("float32"),
        quantization="float32",
        scaler=Scaler("minmax", (0.0,) * 3, (1.0,) * 3, (0.0,) * 3, (1.0,) * 3),
        labels=("benign", "attack"),
        categories={"benign": "benign", "attack": "dos"},
        thresholds={"attack": 0.5},
        threshold_calibration={},
        metrics={},
        golden=Golden(golden, np.zeros((1, 2), np.float32), 1e-4),
        model_sha256=hashlib.sha256(MODEL).hexdigest(),
        model_size=len(MODEL),
        tools={},
        runtimes={},
        key_id=key_id(PUBLIC),
    )
    return manifest.to_json()


MANIFEST = _manifest_json()


def _zip(manifest: bytes, model: bytes, signature: bytes | None, method: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", method) as archive:
        archive.writestr("manifest.json", manifest)
        archive.writestr("model.tflite", model)
        if signature is not None:
            archive.writestr("manifest.sig", signature)
    return out.getvalue()


def _mutate(data: bytes, changes: list[tuple[int, int, bytes]]) -> bytes:
    out = bytearray(data)
    for kind, pos, chunk in changes:
        at = pos % (len(out) + 1)
        if kind == 0:
            out[at:at] = chunk
        elif kind == 1:
            del out[at : at + len(chunk)]
        else:
            out[at : at + len(chunk)] = chunk
    return bytes(out)


def _only_bundle_errors(data: bytes) -> None:
    refused = ""
    try:
        load_bundle(data, [PUBLIC])
    except BundleError as exc:
        refused = str(exc) or "(empty)"
    assert refused, "a fuzzed bundle was accepted"


@FUZZ
@given(changes=edits, deflate=st.booleans())
def test_a_mutated_bundle_archive_is_refused_with_a_bundle_error(
    changes: Any, deflate: bool
) -> None:
    method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    good = _zip(MANIFEST, MODEL, SIGNER.sign(MANIFEST), method)
    _only_bundle_errors(_mutate(good, changes))


json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_leaves,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)


@FUZZ
@given(
    key=st.sampled_from(sorted(json.loads(MANIFEST))),
    value=json_values,
    changes=edits,
    raw=st.booleans(),
)
def test_a_signed_but_hostile_manifest_is_refused_with_a_bundle_error(
    key: str, value: Any, changes: Any, raw: bool
) -> None:
    if raw:
        manifest = _mutate(MANIFEST, changes)
    else:
        document = json.loads(MANIFEST)
        document[key] = value
        manifest = json.dumps(document).encode()
    _only_bundle_errors(_zip(manifest, MODEL, SIGNER.sign(manifest), zipfile.ZIP_STORED))


def _signed_with(edit: str, value: str) -> bytes:
    """The manifest with the JSON text at ``edit`` (a key path) replaced by ``value``, signed."""
    document = json.loads(MANIFEST)
    *path, last = edit.split(".")
    node = document
    for part in path:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[int(last) if isinstance(node, list) else last] = "@VALUE@"
    manifest = json.dumps(document).replace('"@VALUE@"', value).encode()
    return _zip(manifest, MODEL, SIGNER.sign(manifest), zipfile.ZIP_STORED)


@pytest.mark.parametrize(
    ("edit", "value"),
    [
        ("golden.atol", "1" + "0" * 400),  # an integer no float holds
        ("golden.inputs.shape.0", "Infinity"),
        ("step.size", "1" + "0" * 400),
        ("step.size", "1e300"),  # finite, but no step lasts that long
        ("step.size", "1e999"),  # inf once read
        ("scaler.min.0", "1" + "0" * 400),
        ("thresholds.attack", "NaN"),
        ("thresholds.attack", "9" * 5000),  # past Python's digit limit
    ],
)
def test_numbers_out_of_range_deep_in_a_signed_manifest_are_bundle_errors(
    edit: str, value: str
) -> None:
    with pytest.raises(BundleError, match="bundle manifest"):
        load_bundle(_signed_with(edit, value), [PUBLIC])
