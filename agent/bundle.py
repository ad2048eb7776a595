"""Model bundles: the one file a gateway loads, verified on the device itself,
so nothing the desktop or the network did to it is trusted.

Format 1 is a zip archive, members stored uncompressed, holding exactly:

- ``manifest.json`` — UTF-8 JSON, the ``Manifest`` below (``"format": 1``): feature set name,
  schema id and columns, step and window, input/output shapes, dtypes and int8 scale / zero
  point, quantization mode, scaler, labels and their categories, thresholds and their
  calibration, training / float / post-quantization metrics, golden vectors, the model's
  sha256 and size, tool and runtime versions, creation time, the signing key id and the
  bundle's ``version``: a monotonic integer set at convert time that lets a device refuse a
  downgrade. It was added to format 1 compatibly: a manifest without it is version 0, and an
  older agent ignores the key (as it ignores every key it does not read).
- ``model.tflite`` — the model; its sha256 is in the manifest.
- ``manifest.sig`` — raw 64-byte Ed25519 signature over the exact bytes of ``manifest.json``.
  The signature covers the model through ``model_sha256``. A key id is the first 16 hex
  digits of sha256 over the raw 32-byte public key.

Golden vectors are SCALED model inputs (base64 float32, little endian) with the outputs the
converter measured on the real interpreter and an absolute tolerance: a device whose runtime
disagrees (a broken kernel, an op version it mis-runs) refuses the bundle before it is used.

``load_bundle`` checks, in order: the payload is not over the size limit, the file is a zip with
the expected members, the signature is by a trusted key (read under small caps, see
``agent.bundle_archive``), the manifest is sane, the model inflates within the signed
``model_size``, its hash matches, the runtime loads it with
the manifest's shapes and dtypes, and the golden vectors reproduce. Every failure is one
``BundleError`` line naming the part that failed. No TensorFlow here: this runs on the Pi.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from agent import json_bounded
from agent.accumulate import AccumulatorError
from agent.accumulate import spec_of as accumulator_spec
from agent.bundle_archive import COMPANION as COMPANION
from agent.bundle_archive import DEFAULT_MAX_BUNDLE_BYTES as DEFAULT_MAX_BUNDLE_BYTES
from agent.bundle_archive import MANIFEST as MANIFEST
from agent.bundle_archive import MAX_BUNDLE_BYTES as MAX_BUNDLE_BYTES
from agent.bundle_archive import MAX_MODEL_BYTES as MAX_MODEL_BYTES
from agent.bundle_archive import MEMBERS as MEMBERS
from agent.bundle_archive import MODEL as MODEL
from agent.bundle_archive import SIGNATURE as SIGNATURE
from agent.bundle_archive import BundleError as BundleError
from agent.bundle_archive import RawBundle as RawBundle
from agent.bundle_archive import open_archive
from agent.bundle_archive import read_bundle as read_bundle
from agent.digest import sha256_hex
from agent.features.schema import FeatureSet
from agent.features.steps import PADDINGS, STEP_KINDS, StepSpec
from agent.keys import key_id as key_id
from agent.keys import load_public_key as load_public_key
from agent.keys import raw_key
from agent.runtime import Model, ModelLoadError, Quantization
from agent.scaling import Scaler as Scaler
from agent.signature import Verifier, verify_here

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

logger = logging.getLogger(__name__)

FORMAT = 1
MAX_VERSION = 2**63 - 1  # fits every consumer's integer type
MODEL_TYPES = ("cnn", "lstm", "gru", "gru-anomaly", "gru-forecast", "dnn", "external")
TASKS = ("classify", "anomaly")
QUANTIZATIONS = ("float32", "float16", "dynamic", "int8", "external")


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output: dtype, and int8/uint8 scale and zero point when quantized."""

    dtype: str
    scale: float | None = None
    zero_point: int | None = None

    @classmethod
    def of(cls, dtype: str, quant: Quantization | None) -> TensorSpec:
        """From a runtime tensor's dtype and quantization."""
        if quant is None:
            return cls(dtype)
        return cls(dtype, quant.scale, quant.zero_point)


@dataclass(frozen=True, eq=False)
class Golden:
    """Scaled inputs with the outputs the converter measured, and the tolerance allowed."""

    inputs: npt.NDArray[np.float32]
    outputs: npt.NDArray[np.float32]
    atol: float

    def __eq__(self, other: object) -> bool:
        """Equal arrays and tolerance (arrays make the generated ``__eq__`` ambiguous)."""
        if not isinstance(other, Golden):
            return NotImplemented
        return (
            self.atol == other.atol
            and np.array_equal(self.inputs, other.inputs)
            and np.array_equal(self.outputs, other.outputs)
        )


@dataclass(frozen=True)
class Manifest:
    """Everything a device needs to feed, run, judge and trust a model (format 1)."""

    bundle_id: str
    created: str
    model_type: str
    task: str
    feature_set: str
    schema_id: str
    columns: tuple[str, ...]
    step: StepSpec
    window: int
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    input: TensorSpec
    output: TensorSpec
    quantization: str
    scaler: Scaler
    labels: tuple[str, ...]
    categories: Mapping[str, str]
    thresholds: Mapping[str, float]
    threshold_calibration: Mapping[str, Any]
    metrics: Mapping[str, Any]
    golden: Golden
    model_sha256: str
    model_size: int
    tools: Mapping[str, str]
    runtimes: Mapping[str, str]
    key_id: str | None = None
    version: int = 0  # monotonic, set at convert time; absent from older manifests = 0
    format: int = FORMAT
    extra: Mapping[str, Any] = field(default_factory=dict)
    # how the first windows of a stream are filled before ``window`` steps exist: "none" (no
    # window until then; manifests without the key) or "zeros" (all-zero steps, as trained)
    padding: str = "none"

    def prepare(self, windows: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """Raw feature windows (N, T, F) -> scaled model inputs (N, *input_shape).

        A model that reads one step (a DNN on a window of T > 1) gets the last step, as
        training feeds it.
        """
        return self.shape_inputs(self.scaler.transform(windows))

    def shape_inputs(self, scaled: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Scaled windows (N, T, F) -> model inputs (N, *input_shape) (see ``prepare``).

        Scaling is per feature, so windows cut from steps scaled once are the windows
        ``prepare`` scales: the model slot scales each step once, not once per window.
        """
        if int(np.prod(self.input_shape)) == len(self.columns) and scaled.ndim == 3:
            scaled = scaled[:, -1, :]
        return np.ascontiguousarray(scaled).reshape((len(scaled), *self.input_shape))

    def to_json(self) -> bytes:
        """The manifest as the UTF-8 JSON bytes that get signed."""
        data = asdict(self)
        data["step"] = self.step.to_dict()
        data["scaler"] = self.scaler.to_dict()
        data["golden"] = {
            "inputs": _encode_array(self.golden.inputs),
            "outputs": _encode_array(self.golden.outputs),
            "atol": self.golden.atol,
        }
        return json.dumps(data, indent=1, sort_keys=True).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        """Parse and validate; BundleError names the offending key."""
        try:
            raw = json_bounded.loads(data.decode("utf-8"))
        except (ValueError, RecursionError) as exc:  # also integers wider than an int64
            raise BundleError(f"bundle manifest: not valid JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise BundleError("bundle manifest: not a JSON object")
        return _parse_manifest(raw)


def _encode_array(array: npt.NDArray[np.float32]) -> dict[str, Any]:
    """A float32 array as shape + base64 little-endian bytes (compact and exact)."""
    data = np.ascontiguousarray(array, dtype="<f4").tobytes()
    return {"shape": list(array.shape), "data": base64.b64encode(data).decode("ascii")}


def _decode_array(value: Any, key: str) -> npt.NDArray[np.float32]:
    """Inverse of ``_encode_array``; BundleError names ``key`` when malformed."""
    try:
        shape = tuple(int(d) for d in value["shape"])
        data = base64.b64decode(value["data"], validate=True)
        return np.frombuffer(data, dtype="<f4").reshape(shape).astype(np.float32)
    # OverflowError: a dimension of Infinity
    except (KeyError, TypeError, ValueError, OverflowError, binascii.Error) as exc:
        raise BundleError(f"bundle manifest: {key}: malformed array ({exc})") from None


class _Reader:
    """Typed access to the manifest's JSON object with errors that name the key."""

    def __init__(self, raw: Mapping[str, Any], prefix: str = "") -> None:
        self.raw = raw
        self.prefix = prefix

    def fail(self, key: str, why: str) -> BundleError:
        return BundleError(f"bundle manifest: {self.prefix}{key}: {why}")

    def get(self, key: str, kind: type | tuple[type, ...]) -> Any:
        if key not in self.raw:
            raise self.fail(key, "missing")
        value = self.raw[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise self.fail(key, f"expected {_kind_name(kind)}, got {type(value).__name__}")
        return value

    def text(self, key: str, choices: Sequence[str] | None = None) -> str:
        value: str = self.get(key, str)
        if choices is not None and value not in choices:
            raise self.fail(key, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def floats(self, key: str, length: int | None = None) -> tuple[float, ...]:
        values = self.get(key, list)
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            raise self.fail(key, "expected a list of numbers")
        if length is not None and len(values) != length:
            raise self.fail(key, f"expected {length} values, got {len(values)}")
        return tuple(float(v) for v in values)

    def ints(self, key: str) -> tuple[int, ...]:
        values = self.get(key, list)
        if not values or not all(isinstance(v, int) and v > 0 for v in values):
            raise self.fail(key, "expected a non-empty list of positive integers")
        return tuple(values)

    def strings(self, key: str) -> tuple[str, ...]:
        values = self.get(key, list)
        if not all(isinstance(v, str) for v in values):
            raise self.fail(key, "expected a list of strings")
        return tuple(values)

    def mapping(self, key: str, value_kind: type | tuple[type, ...] = object) -> dict[str, Any]:
        value: dict[str, Any] = self.get(key, dict)
        if not all(isinstance(v, value_kind) for v in value.values()):
            raise self.fail(key, f"values must be {_kind_name(value_kind)}")
        return value

    def child(self, key: str) -> _Reader:
        return _Reader(self.get(key, dict), f"{self.prefix}{key}.")


def _thresholds(reader: _Reader) -> dict[str, float]:
    """Finite numbers only: a NaN threshold is never reached, which silently disarms a label."""
    found = reader.mapping("thresholds", (int, float))
    for label, value in found.items():
        if isinstance(value, bool) or not math.isfinite(value):
            raise reader.fail("thresholds", f"{label[:40]!r}: expected a finite number")
    return {k: float(v) for k, v in found.items()}


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def _tensor(reader: _Reader) -> TensorSpec:
    dtype = reader.text("dtype", ("float32", "int8", "uint8", "int16"))
    if dtype == "float32":
        return TensorSpec(dtype)
    scale = float(reader.get("scale", (int, float)))
    if not scale > 0:
        raise reader.fail("scale", f"must be > 0, got {scale}")
    return TensorSpec(dtype, scale, int(reader.get("zero_point", int)))


def _parse_manifest(raw: Mapping[str, Any]) -> Manifest:
    """Build a Manifest from parsed JSON, checking types, lengths and shapes."""
    r = _Reader(raw)
    version = r.get("format", int)
    if version != FORMAT:
        raise r.fail("format", f"this agent reads format {FORMAT}, got {version}")
    columns = r.strings("columns")
    width = len(columns)
    if width == 0:
        raise r.fail("columns", "empty")
    step_raw = r.child("step")
    try:
        step_raw.text("kind", STEP_KINDS)
        step = StepSpec.from_dict(step_raw.raw)
    except ValueError as exc:
        raise r.fail("step", str(exc)) from None
    window = r.get("window", int)
    if window < 1:
        raise r.fail("window", f"must be >= 1, got {window}")
    input_shape = r.ints("input_shape")
    if int(np.prod(input_shape)) not in (window * width, width):
        raise r.fail(
            "input_shape", f"{list(input_shape)} holds neither {window} x {width} nor 1 step"
        )
    try:
        scaler = Scaler.parse(r.get("scaler", dict), width)
    except ValueError as exc:
        raise BundleError(f"bundle manifest: {r.prefix}scaler.{exc}") from None
    labels = r.strings("labels")
    task = r.text("task", TASKS)
    if task == "classify" and len(labels) < 2:
        raise r.fail("labels", "a classifier needs at least two labels")
    g = r.child("golden")
    golden = Golden(
        _decode_array(g.get("inputs", dict), "golden.inputs"),
        _decode_array(g.get("outputs", dict), "golden.outputs"),
        float(g.get("atol", (int, float))),
    )
    if golden.inputs.shape[1:] != input_shape or len(golden.inputs) != len(golden.outputs):
        raise r.fail("golden", f"inputs {golden.inputs.shape} do not fit {list(input_shape)}")
    key_id = raw.get("key_id")
    if key_id is not None and not isinstance(key_id, str):
        raise r.fail("key_id", "expected a string or null")
    bundle_version = r.get("version", int) if "version" in raw else 0
    if not 0 <= bundle_version <= MAX_VERSION:
        raise r.fail("version", f"must be 0..{MAX_VERSION}, got {bundle_version}")
    extra = r.mapping("extra") if "extra" in raw else {}
    _check_accumulator(extra, width, task)
    return Manifest(
        bundle_id=r.text("bundle_id"),
        created=r.text("created"),
        model_type=r.text("model_type", MODEL_TYPES),
        task=task,
        feature_set=r.text("feature_set"),
        schema_id=r.text("schema_id"),
        columns=columns,
        step=step,
        window=window,
        input_shape=input_shape,
        output_shape=r.ints("output_shape"),
        input=_tensor(r.child("input")),
        output=_tensor(r.child("output")),
        quantization=r.text("quantization", QUANTIZATIONS),
        scaler=scaler,
        labels=labels,
        categories=r.mapping("categories", str),
        thresholds=_thresholds(r),
        threshold_calibration=r.mapping("threshold_calibration"),
        metrics=r.mapping("metrics"),
        golden=golden,
        model_sha256=r.text("model_sha256"),
        model_size=r.get("model_size", int),
        tools=r.mapping("tools", str),
        runtimes=r.mapping("runtimes", str),
        key_id=key_id,
        version=bundle_version,
        extra=extra,
        padding=r.text("padding", PADDINGS) if "padding" in raw else "none",
    )


def _check_accumulator(extra: Mapping[str, Any], width: int, task: str) -> None:
    """A hostile or misfit ``extra.accumulator`` is refused at load, not when windows come."""
    try:
        spec = accumulator_spec(extra)
        if spec is not None:
            spec.check_width(width)
    except AccumulatorError as exc:
        raise BundleError(str(exc)) from None
    if spec is not None and task != "anomaly":
        raise BundleError("bundle manifest: extra.accumulator: only an anomaly model has one")


# --- reading and checking ---------------------------------------------------------------------


@dataclass(frozen=True)
class Bundle:
    """A verified bundle: its manifest, the loaded model, and who signed it."""

    manifest: Manifest
    model: Model
    signer: str
    raw: RawBundle


class _Signed(Protocol):
    """What a signature check needs: the manifest's bytes and the signature over them."""

    @property
    def manifest_bytes(self) -> bytes: ...

    @property
    def signature(self) -> bytes | None: ...


def check_signature(
    raw: _Signed,
    trusted_keys: Sequence[Ed25519PublicKey | bytes],
    verify: Verifier = verify_here,
) -> str:
    """Key id of the trusted key that signed the manifest; BundleError otherwise.

    ``verify`` does the Ed25519 check: in process, or ``agent.signature.ChildVerifier``.
    """
    if raw.signature is None:
        raise BundleError("bundle signature: unsigned bundle (no manifest.sig)")
    if len(raw.signature) != 64:
        raise BundleError(f"bundle signature: {len(raw.signature)} bytes, expected 64")
    keys = [raw_key(k) for k in trusted_keys]
    if not keys:
        raise BundleError("bundle signature: no trusted keys configured")
    found = verify(keys, raw.signature, raw.manifest_bytes)
    if found is not None:
        return key_id(keys[found])
    claimed = _claimed_key_id(raw.manifest_bytes)
    if claimed in {key_id(k) for k in keys}:
        raise BundleError(
            f"bundle signature: invalid for trusted key {claimed} (manifest or signature altered)"
        )
    raise BundleError(f"bundle signature: signed by untrusted key {claimed}")


def _claimed_key_id(manifest_bytes: bytes) -> str:
    """The key id an (unverified) manifest claims, for error messages only.

    Whoever pushed the bundle wrote it, and the refusal goes to the log and the retained model
    topic: only the shape of a real key id (16 hex digits, ``agent.keys.key_id``) is repeated.
    """
    try:
        claimed = json.loads(manifest_bytes).get("key_id")
    except (ValueError, AttributeError, RecursionError):  # unsigned bytes: anything goes
        return "unknown (manifest unreadable)"
    if not isinstance(claimed, str):
        return "unknown"
    if len(claimed) != 16 or any(c not in "0123456789abcdef" for c in claimed):
        return "unknown (not a key id)"
    return claimed


def check_model_hash(manifest: Manifest, model_content: bytes) -> None:
    """The model bytes are the ones the (signed) manifest describes."""
    digest = sha256_hex(model_content)
    if digest != manifest.model_sha256:
        raise BundleError(
            f"bundle model: sha256 mismatch (manifest {manifest.model_sha256[:12]}…, "
            f"file {digest[:12]}…)"
        )
    if len(model_content) != manifest.model_size:
        raise BundleError(
            f"bundle model: {len(model_content)} bytes, manifest says {manifest.model_size}"
        )


def load_model(manifest: Manifest, model_content: bytes, num_threads: int = 1) -> Model:
    """Load the model on this device's runtime and check it against the manifest."""
    try:
        model = Model(model_content, num_threads=num_threads)
    except ModelLoadError as exc:
        raise BundleError(f"bundle model: {exc}") from None
    checks = (
        ("input shape", model.input_shape, manifest.input_shape),
        ("output shape", model.output_shape, manifest.output_shape),
        ("input", TensorSpec.of(model.input_dtype, model.input_quantization), manifest.input),
        ("output", TensorSpec.of(model.output_dtype, model.output_quantization), manifest.output),
    )
    for what, actual, declared in checks:
        if not _same(actual, declared):
            raise BundleError(f"bundle model: {what} {actual} != manifest {declared}")
    return model


def _same(actual: object, declared: object) -> bool:
    """Equality, with float scales compared to float32 precision."""
    if isinstance(actual, TensorSpec) and isinstance(declared, TensorSpec):
        return (
            actual.dtype == declared.dtype
            and actual.zero_point == declared.zero_point
            and bool(np.isclose(actual.scale or 0.0, declared.scale or 0.0, rtol=1e-6))
        )
    return actual == declared


def golden_error(manifest: Manifest, model: Model) -> float:
    """Largest absolute difference between the golden outputs and this runtime's."""
    try:
        outputs = model.predict(manifest.golden.inputs)
        expected = manifest.golden.outputs.reshape(outputs.shape)
    except (ValueError, RuntimeError) as exc:  # the runtime failed, or outputs of another shape
        raise BundleError(f"bundle golden vectors: cannot check them ({exc})") from None
    return float(np.max(np.abs(outputs - expected), initial=0.0))


def check_golden(manifest: Manifest, model: Model) -> float:
    """The golden vectors reproduce within tolerance; returns the largest error."""
    error = golden_error(manifest, model)
    if not error <= manifest.golden.atol:
        raise BundleError(
            f"bundle golden vectors: max error {error:.6g} > tolerance {manifest.golden.atol:.6g}"
        )
    return error


def _declared_companion_size(manifest: Manifest) -> int | None:
    """The benign model's size as the signed manifest declares it (agent/openset.py checks the
    rest of its section); None when it declares no benign model."""
    section = manifest.extra.get("openset")
    if not isinstance(section, Mapping):
        return None
    size = section.get("model_size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise BundleError("bundle manifest extra.openset.model_size: must be a byte count")
    return size


def load_bundle(
    source: str | Path | bytes,
    trusted_keys: Sequence[Ed25519PublicKey | bytes],
    num_threads: int = 1,
    max_bytes: int = MAX_BUNDLE_BYTES,
    verify: Verifier = verify_here,
) -> Bundle:
    """Read, authenticate and prove a bundle on this device; BundleError says what failed.

    Nothing is inflated past a small cap before the signature checks out: the model is read
    only then, capped at the size the signed manifest gives it.
    """
    archive = open_archive(source, max_bytes)
    try:
        signer = check_signature(archive, trusted_keys, verify)
        manifest = Manifest.from_json(archive.manifest_bytes)
        raw = RawBundle(
            archive.manifest_bytes,
            archive.model(manifest.model_size),
            archive.signature,
            archive.companion(_declared_companion_size(manifest)),
        )
    finally:
        archive.close()
    check_model_hash(manifest, raw.model_content)
    model = load_model(manifest, raw.model_content, num_threads)
    error = check_golden(manifest, model)
    logger.info(
        "bundle %s verified: signed by %s, golden max error %.3g", manifest.bundle_id, signer, error
    )
    return Bundle(manifest, model, signer, raw)


def check_compatible(
    manifest: Manifest, feature_set: FeatureSet, step: StepSpec, window: int, source: str = ""
) -> None:
    """The agent's features fit the bundle: same schema, step and window; BundleError if not.

    ``source`` names the config's source, so the step message can say which setting fixes it.
    """
    if manifest.feature_set != feature_set.id or manifest.schema_id != feature_set.schema_id:
        raise BundleError(
            f"bundle schema: model wants {manifest.feature_set} ({manifest.schema_id}), "
            f"source {source or '?'} computes {feature_set.id} ({feature_set.schema_id}); "
            f"the model needs a source that computes {manifest.feature_set}"
        )
    if manifest.step != step:
        raise BundleError(step_problem(manifest.step, step, source))
    if manifest.window != window:
        raise BundleError(
            f"bundle window: model wants {manifest.window} steps, agent uses {window}"
        )


def step_problem(wanted: StepSpec, used: StepSpec, source: str = "") -> str:
    """A step mismatch in the config's own words (``"20p"``), with the setting that fixes it."""
    where = f"source {source}" if source else "the source"
    return (
        f'bundle step: model wants "{wanted.text}", {where} uses "{used.text}"; '
        f'set step = "{wanted.text}" on {where} (or leave step out to take the model\'s)'
    )
