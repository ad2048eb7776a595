"""Open set: a benign traffic model beside the classifier, and the fusion of the two.

A classifier only knows the classes it was trained on: an attack it never saw is named after
the nearest one, and another network's everyday traffic can look like anything. A small
autoencoder trained on BENIGN windows only answers the other question — how far is this
window from normal traffic — and the decision layer combines both, per window:

- far from benign and no confident attack class: ``unknown`` (family ``unknown``);
- far from benign and a confident attack class: that class;
- a confident attack class on a window the benign model calls normal: not an alarm.

The benign model ships inside the classifier's bundle as the member ``anomaly.tflite``,
described by the signed manifest's ``extra["openset"]`` section (so one signature covers
both models): the model's sha256 and size, its own scaler (fit on benign windows: log1p then
min-max, ``LogScaler``; older bundles carry a plain min-max one), the
per-dimension error scale, the anomaly threshold (the signed floor calibration never goes
below), optionally a stream-start threshold (``start_threshold``: the edge of a stream's first
``START_WINDOWS`` windows, fitted on the benign training recordings' own starts, never below
the threshold; bundles without it use the threshold throughout), and golden vectors checked on
this device's runtime like the classifier's.

The benign model reads a summary of the scaled window, not the window itself: per feature the
mean, the maximum and the last step (3 x F values). It is independent of the window length,
tiny (a few thousand int8 weights) and runs in microseconds. Its score is the mean, over the
3 x F dimensions, of the squared reconstruction error divided by that dimension's typical
error on benign training windows, so a feature benign traffic never moves counts as much as a
busy one. Scores are compared relative to the threshold (r = score / threshold; 1 is the edge
of benign), which keeps them comparable across sites and bundles; ``unknown`` events carry
r / (1 + r), 0.5 at the edge.

A section may carry feature ``groups`` (``agent.benign_groups``): each group has its own
signed edge, which a site calibration raises apart; once a calibration carries group edges, a
window's ratio is its largest group ratio. Before that the one score and ``threshold`` judge
it, as without groups.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.benign_groups import (
    Groups,
    clips_at_range,
    group_scores,
    parse_groups,
    wide_transform,
)
from agent.bundle import Bundle, BundleError, Manifest, Scaler
from agent.digest import sha256_hex
from agent.runtime import Model, ModelLoadError
from agent.stream_start import START_WINDOWS, starting

SECTION = "openset"
SECTION_FORMAT = 1
SUMMARY = "summary-v1"  # mean, max and last step of every feature of the scaled window
UNKNOWN = "unknown"
UNKNOWN_CATEGORY = "unknown"
MIN_ERROR_SCALE = 1e-3  # a dimension benign traffic never moves still has a finite scale
LOG_MINMAX = "log1p-minmax"
SCALER_KINDS = ("minmax", LOG_MINMAX)
# A stream-start edge this many times the steady one would leave a stream's first windows
# without an unknown answer at all: refused as a broken or hostile manifest, not obeyed.
MAX_START_RATIO = 100.0


@dataclass(frozen=True)
class LogScaler:
    """The benign model's scaler: log1p of the raw features, then min-max to 0..1.

    Counts and byte totals span orders of magnitude: on a linear scale the rarest benign
    event (one download in hours) sets a feature's maximum and squeezes everyday traffic near
    0, so a download a little larger than the one trained on reads as far from benign. On a
    log scale everyday traffic fills the range and an event's distance grows with its ratio to
    normal, not its difference. ``min`` / ``max`` are in log1p units. Every traffic-v1 feature
    is >= 0; a negative value is read as 0 (log1p of it is undefined below -1).
    """

    min: tuple[float, ...]
    max: tuple[float, ...]
    kind: str = LOG_MINMAX

    def transform(self, raw: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """Scaled features, same shape as ``raw``; 0 where max == min, beyond the range clipped."""
        x = np.log1p(np.maximum(np.asarray(raw, dtype=np.float64), 0.0))
        lo = np.asarray(self.min, dtype=np.float64)
        span = np.asarray(self.max, dtype=np.float64) - lo
        safe = np.where(span > 0, span, 1.0)
        scaled = np.where(span > 0, (x - lo) / safe, 0.0)
        return np.clip(scaled, 0.0, 1.0).astype(np.float32)


BenignScaler = Scaler | LogScaler


def _scaler_dict(scaler: BenignScaler) -> dict[str, Any]:
    if isinstance(scaler, LogScaler):
        return {"kind": scaler.kind, "min": list(scaler.min), "max": list(scaler.max)}
    return {
        "kind": scaler.kind,
        "min": list(scaler.min),
        "max": list(scaler.max),
        "clip_low": list(scaler.clip_low),
        "clip_high": list(scaler.clip_high),
    }


def summarize(scaled: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Scaled windows (N, T, F) -> the benign model's input (N, 3F): mean, max, last step."""
    x = np.asarray(scaled, np.float32)
    return np.concatenate((x.mean(axis=1), x.max(axis=1), x[:, -1, :]), axis=1).astype(np.float32)


@dataclass(frozen=True)
class OpenSetSpec:
    """The signed ``extra["openset"]`` section of a manifest."""

    model_sha256: str
    model_size: int
    scaler: BenignScaler
    error_scale: tuple[float, ...]
    threshold: float  # raw score at the edge of benign: the signed floor
    golden_inputs: npt.NDArray[np.float32]
    golden_outputs: npt.NDArray[np.float32]
    golden_atol: float
    calibration: Mapping[str, Any]
    # raw score at the edge of benign for a stream's first windows; None: ``threshold``
    start_threshold: float | None = None
    # how many first windows it covers; None: START_WINDOWS (as a site calibration's)
    start_windows: int | None = None
    # per-group scores and edges; None: one score per window (bundles before them)
    groups: Groups | None = None

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> OpenSetSpec | None:
        """The section, or None for a single-model bundle; BundleError when malformed."""
        raw = manifest.extra.get(SECTION)
        if raw is None:
            return None
        if not isinstance(raw, Mapping):
            raise BundleError(f"bundle manifest: extra.{SECTION}: expected an object")
        return _parse(raw, manifest.columns)

    def to_dict(self) -> dict[str, Any]:
        """JSON form as stored in the manifest (arrays as base64 little-endian float32)."""
        start: dict[str, Any] = {}
        if self.start_threshold is not None:
            start["start_threshold"] = self.start_threshold
        if self.start_windows is not None:
            start["start_windows"] = self.start_windows
        if self.groups is not None:
            start["groups"] = self.groups.to_dict()
        return {
            "format": SECTION_FORMAT,
            "input": SUMMARY,
            "model_sha256": self.model_sha256,
            "model_size": self.model_size,
            "scaler": _scaler_dict(self.scaler),
            "error_scale": list(self.error_scale),
            "threshold": self.threshold,
            **start,
            "golden": {
                "inputs": _encode_array(self.golden_inputs),
                "outputs": _encode_array(self.golden_outputs),
                "atol": self.golden_atol,
            },
            "calibration": dict(self.calibration),
        }


def _encode_array(array: npt.NDArray[np.float32]) -> dict[str, Any]:
    """A float32 array as shape + base64 little-endian bytes, as the manifest's golden vectors."""
    data = np.ascontiguousarray(array, dtype="<f4").tobytes()
    return {"shape": list(array.shape), "data": base64.b64encode(data).decode("ascii")}


def _decode_array(value: Any, key: str) -> npt.NDArray[np.float32]:
    """Inverse of ``_encode_array``; BundleError names ``key`` when malformed."""
    try:
        shape = tuple(int(d) for d in value["shape"])
        if len(shape) != 2 or min(shape) < 0 or shape[0] * shape[1] > 1 << 20:
            raise ValueError(f"shape {list(shape)} is not a small 2-d array")
        data = base64.b64decode(value["data"], validate=True)
        return np.frombuffer(data, dtype="<f4").reshape(shape).astype(np.float32)
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise BundleError(f"bundle manifest: {key}: malformed array ({exc})") from None


def _fail(key: str, why: str) -> BundleError:
    return BundleError(f"bundle manifest: extra.{SECTION}.{key}: {why}")


def _numbers(raw: Mapping[str, Any], key: str, length: int) -> tuple[float, ...]:
    values = raw.get(key)
    if not isinstance(values, list) or len(values) != length:
        raise _fail(key, f"expected a list of {length} numbers")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        raise _fail(key, "expected numbers")
    result = tuple(float(v) for v in values)
    if not all(np.isfinite(result)):
        raise _fail(key, "values must be finite")
    return result


def _parse_scaler(s: Any, width: int) -> BenignScaler:
    """The section's scaler; a range that runs backwards (a negative scale) is refused."""
    if not isinstance(s, Mapping) or s.get("kind") not in SCALER_KINDS:
        raise _fail("scaler", f"expected a scaler object of kind {' or '.join(SCALER_KINDS)}")
    low, high = _numbers(s, "min", width), _numbers(s, "max", width)
    if any(h < lo for lo, h in zip(low, high, strict=True)):
        raise _fail("scaler.max", "values must be >= min (a negative scale)")
    if s["kind"] == LOG_MINMAX:
        return LogScaler(low, high)
    clip_low, clip_high = _numbers(s, "clip_low", width), _numbers(s, "clip_high", width)
    return Scaler("minmax", low, high, clip_low, clip_high)


def _parse(raw: Mapping[str, Any], columns: Sequence[str]) -> OpenSetSpec:
    width = len(columns)
    if raw.get("format") != SECTION_FORMAT:
        raise _fail("format", f"this agent reads {SECTION_FORMAT}, got {raw.get('format')!r}")
    if raw.get("input") != SUMMARY:
        raise _fail("input", f"this agent computes {SUMMARY!r}, got {raw.get('input')!r}")
    digest, size = raw.get("model_sha256"), raw.get("model_size")
    if not isinstance(digest, str) or len(digest) != 64:
        raise _fail("model_sha256", "expected 64 hex digits")
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise _fail("model_size", "expected a positive integer")
    scaler = _parse_scaler(raw.get("scaler"), width)
    error_scale = _numbers(raw, "error_scale", 3 * width)
    if min(error_scale) <= 0:
        raise _fail("error_scale", "values must be > 0")
    threshold = raw.get("threshold")
    if not isinstance(threshold, int | float) or isinstance(threshold, bool) or not threshold > 0:
        raise _fail("threshold", "expected a number > 0")
    start = _start_threshold(raw.get("start_threshold"), float(threshold))
    start_windows = _start_windows(raw.get("start_windows"), start)
    g = raw.get("golden")
    if not isinstance(g, Mapping):
        raise _fail("golden", "expected an object")
    inputs = _decode_array(g.get("inputs"), f"extra.{SECTION}.golden.inputs")
    outputs = _decode_array(g.get("outputs"), f"extra.{SECTION}.golden.outputs")
    atol = g.get("atol")
    if inputs.ndim != 2 or inputs.shape[1] != 3 * width or outputs.shape != inputs.shape:
        raise _fail("golden", f"expected inputs and outputs of shape (n, {3 * width})")
    if not isinstance(atol, int | float) or isinstance(atol, bool) or not atol >= 0:
        raise _fail("golden.atol", "expected a number >= 0")
    calibration = raw.get("calibration", {})
    if not isinstance(calibration, Mapping):
        raise _fail("calibration", "expected an object")
    groups = parse_groups(raw.get("groups"), columns, START_WINDOWS)
    return OpenSetSpec(
        digest,
        size,
        scaler,
        error_scale,
        float(threshold),
        inputs,
        outputs,
        float(atol),
        dict(calibration),
        start,
        start_windows,
        groups,
    )


def _start_windows(value: Any, start: float | None) -> int | None:
    """How many first windows the start edge covers: absent, or 1..START_WINDOWS with an edge."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= START_WINDOWS:
        raise _fail("start_windows", f"expected a whole number from 1 to {START_WINDOWS}")
    if start is None:
        raise _fail("start_windows", "given without a start_threshold")
    return value


def _start_threshold(value: Any, threshold: float) -> float | None:
    """The optional stream-start edge: absent (older bundles), or threshold..100 x threshold."""
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise _fail("start_threshold", "expected a finite number")
    if not threshold <= value <= MAX_START_RATIO * threshold:
        raise _fail(
            "start_threshold",
            f"expected {threshold:.6g} (the threshold) to {MAX_START_RATIO:g} x that, got {value}",
        )
    return float(value)


class BenignModel:
    """The verified benign model of a bundle: scores windows by their distance from benign."""

    def __init__(self, spec: OpenSetSpec, model: Model, columns: Sequence[str]) -> None:
        self.spec = spec
        self.model = model
        self._error_scale = np.asarray(spec.error_scale, np.float64)
        groups = spec.groups
        self._layout = groups.layout(columns) if groups is not None else None
        self._clips_at_range = clips_at_range(spec.scaler)
        self._edges = np.asarray([g.threshold for g in groups.groups] if groups else [], float)

    def scores(self, windows: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        """Raw feature windows (N, T, F) -> raw anomaly score per window (threshold: edge).

        With groups: (N, 1 + groups), the raw score first, then each group's score over its
        signed edge (``Fusion`` reads the one or the others).
        """
        groups = self.spec.groups
        if groups is None or self._layout is None:
            x = summarize(self.spec.scaler.transform(windows))
            out = self.model.predict(x).astype(np.float64)
            error = (out - x.astype(np.float64)) ** 2 / self._error_scale
            return np.asarray(error.mean(axis=1), np.float64)
        wide = wide_transform(self.spec.scaler, windows, groups.range)
        # the model reads the window clipped at the benign range, as it was trained
        clipped = np.minimum(wide, 1.0) if self._clips_at_range else None
        x = summarize(clipped if clipped is not None else self.spec.scaler.transform(windows))
        out = self.model.predict(x).astype(np.float64)
        one = ((out - x.astype(np.float64)) ** 2 / self._error_scale).mean(axis=1)
        error = (out - summarize(wide).astype(np.float64)) ** 2 / self._error_scale
        ratios = group_scores(error, self._layout) / self._edges
        return np.asarray(np.concatenate((one[:, None], ratios), axis=1), np.float64)


def load_benign_model(bundle: Bundle, num_threads: int = 1) -> BenignModel | None:
    """The bundle's benign model, proven on this runtime; None for a single-model bundle.

    Checked like the classifier: the member's hash and size match the signed section, the
    runtime loads it with the expected shapes, and the golden vectors reproduce.
    """
    spec = OpenSetSpec.from_manifest(bundle.manifest)
    content = bundle.raw.companion
    if spec is None:
        if content is not None:
            raise BundleError("bundle file: anomaly.tflite present but the manifest has no openset")
        return None
    if content is None:
        raise BundleError("bundle file: missing anomaly.tflite (the manifest declares one)")
    digest = sha256_hex(content)
    if digest != spec.model_sha256 or len(content) != spec.model_size:
        raise BundleError(
            f"bundle benign model: sha256/size mismatch (manifest {spec.model_sha256[:12]}…, "
            f"file {digest[:12]}…)"
        )
    try:
        model = Model(content, num_threads=num_threads)
    except ModelLoadError as exc:
        raise BundleError(f"bundle benign model: {exc}") from None
    width = 3 * len(bundle.manifest.columns)
    if model.input_shape != (width,) or model.output_shape != (width,):
        raise BundleError(
            f"bundle benign model: shapes {model.input_shape} -> {model.output_shape}, "
            f"expected ({width},) -> ({width},)"
        )
    try:
        got = model.predict(spec.golden_inputs)
    except (ValueError, RuntimeError) as exc:
        raise BundleError(f"bundle benign model golden vectors: cannot check ({exc})") from None
    error = float(np.max(np.abs(got - spec.golden_outputs), initial=0.0))
    if not error <= spec.golden_atol:
        raise BundleError(
            f"bundle benign model golden vectors: max error {error:.6g} > {spec.golden_atol:.6g}"
        )
    return BenignModel(spec, model, bundle.manifest.columns)


@dataclass(frozen=True)
class Fusion:
    """How one window's classifier scores and benign-model score become the decider's scores.

    ``watched`` are the indices of attack labels; ``thresholds`` the classifier's (possibly
    site-calibrated) per-label thresholds; ``anomaly_threshold`` the raw benign-model score at
    the edge of benign for ``unknown`` (the signed floor, or a site calibration above it);
    ``gate_threshold`` the edge a known class must cross, always the signed floor: a site
    calibration quiets the site's own novelty, it must not also silence the classes the
    classifier knows (their thresholds are calibrated on their own). ``start_threshold`` is
    the ``unknown`` edge of a stream's first ``start_windows`` windows (the bundle's signed
    stream-start edge or a site calibration's, never below ``anomaly_threshold``), None: the
    same edge throughout. A grouped benign model's scores are (N, 1 + groups): the raw score,
    then the ratios to the signed group edges. Without ``group_edges`` (a site calibration's
    per-group edges) the raw score is read as without groups; with them the ratio is the
    largest group ratio to them, and ``start_threshold`` is the edge of the largest ratio to
    the signed ones. The gate always reads the raw score.
    """

    watched: tuple[int, ...]
    thresholds: tuple[float, ...]
    anomaly_threshold: float
    gate_threshold: float
    start_threshold: float | None = None
    start_windows: int = 0
    start_seconds: float = 0.0  # the start edge's time in the stream (a site calibration's)
    group_edges: tuple[float, ...] | None = None

    def ratios(
        self,
        anomaly: npt.NDArray[np.float64],
        numbers: npt.NDArray[np.int64] | None = None,
        elapsed_ns: npt.NDArray[np.int64] | None = None,
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """(raw score for the gate, r = distance from benign, 1 at the edge) per window."""
        scores = np.asarray(anomaly, np.float64)
        raw = scores[:, 0] if scores.ndim == 2 else scores
        read, ratio = raw, raw / self.anomaly_threshold
        if scores.ndim == 2 and self.group_edges is not None:
            # per group against the site's edges: the largest (a NaN anywhere stays NaN)
            groups = scores[:, 1:]
            read = groups.max(axis=1)
            ratio = np.max(groups / np.asarray(self.group_edges, np.float64), axis=1)
        if self.start_threshold is not None and numbers is not None:
            # the stream's first windows (a network booting) against their own edge, which
            # only ever quiets them (never below the steady edge)
            start = np.minimum(ratio, read / self.start_threshold)
            early = starting(numbers, elapsed_ns, self.start_windows, self.start_seconds)
            ratio = np.where(early, start, ratio)
        return raw, ratio

    def fuse(
        self,
        probabilities: npt.NDArray[np.float64],
        anomaly: npt.NDArray[np.float64],
        numbers: npt.NDArray[np.int64] | None = None,
        elapsed_ns: npt.NDArray[np.int64] | None = None,
    ) -> npt.NDArray[np.float64]:
        """(N, labels) and (N,) -> (N, labels + 1): attack scores gated, then ``unknown``.

        ``numbers`` are the windows' numbers in the stream (0: its first) and ``elapsed_ns``
        the time from its first step to each window's last, for the start edge.

        With r = anomaly score / threshold, the last column is r / (1 + r) where no attack
        class is confident on a window far from benign (r >= 1), else 0: 0.5 at the edge of
        benign, below 1 like a softmax score, so ``raise_score`` means the same for it.
        """
        raw, ratio = self.ratios(anomaly, numbers, elapsed_ns)
        far = ratio >= 1.0  # NaN is not far: a broken score never raises
        fused = np.where((raw >= self.gate_threshold)[:, None], probabilities, 0.0)
        watched = list(self.watched)
        if watched:
            limits = np.asarray(self.thresholds, np.float64)[watched]
            confident = np.any(probabilities[:, watched] >= limits, axis=1)
        else:
            confident = np.zeros(len(ratio), bool)
        unknown = np.where(far & ~confident, ratio / (1.0 + ratio), 0.0)
        return np.concatenate((fused, unknown[:, None]), axis=1)


def fused_labels(labels: Sequence[str]) -> tuple[str, ...]:
    """The decider's labels for a paired bundle: the classifier's, then ``unknown``."""
    return (*labels, UNKNOWN)


UNKNOWN_THRESHOLD = 0.5  # r / (1 + r) at r = 1, the edge of benign


def describe(manifest: Manifest) -> dict[str, Any] | None:
    """The ``open_set`` field of the ``model`` topic: None for a single-model bundle."""
    try:
        spec = OpenSetSpec.from_manifest(manifest)
    except BundleError:
        return None
    if spec is None:
        return None
    described: dict[str, Any] = {
        "benign_model": spec.model_sha256[:12],
        "threshold": spec.threshold,
    }
    if spec.start_threshold is not None:
        described["start_threshold"] = spec.start_threshold
        described["start_windows"] = spec.start_windows or START_WINDOWS
    if spec.groups is not None:
        described["groups"] = [g.name for g in spec.groups.groups]
    return described
