"""A model slot: one verified bundle on one source's windows, scored and debounced into events.

The slot keeps the last ``window - 1`` steps so windows slide by one step across batches, and
the evidence of those steps so an event can say what was on the wire (summarised only when an
event needs it, and at once when the steps kept hold more than ``MAX_PENDING_PACKETS``). A
replacement bundle (remote update) is staged and swapped in between two windows: no step is
lost in the swap, and a bundle that does not fit this source's features never gets staged, so
a bad update cannot stop detection.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from agent import classifier_unknown, openset
from agent.accumulate import Accumulator
from agent.accumulate import spec_of as accumulator_spec
from agent.bundle import Bundle, BundleError, check_compatible
from agent.calibration import CalibrationError, SiteCalibration
from agent.classifier_unknown import ClassifierUnknown
from agent.decide import Decider, DecisionPolicy, Event, Evidence
from agent.evidence import MAX_PENDING_PACKETS, held_packets, summarise
from agent.features.schema import FeatureSet
from agent.features.steps import StepSpec, lead_in, sliding_windows
from agent.sources import StepBatch
from agent.stream_start import START_SECONDS, START_WINDOWS, starting

logger = logging.getLogger(__name__)

MAX_BATCH = 32  # windows per interpreter call

# One step's evidence: its batch's evidence (lazy or summarised) and the step's index in it.
EvidenceRef = tuple[Sequence[Evidence | None], int]
_NO_EVIDENCE: tuple[Evidence | None] = (None,)

# window end times, classifier scores, benign-model scores (None: single model), whether
# a detection was open when each window came, each window's number in the stream (0: first)
# and whether it is in the stream's start period as a site calibration sees it
ScoreHook = Callable[
    [
        npt.NDArray[np.int64],
        npt.NDArray[np.float64],
        npt.NDArray[np.float64] | None,
        npt.NDArray[np.bool_],
        npt.NDArray[np.int64],
        npt.NDArray[np.bool_],
    ],
    None,
]


@dataclass(frozen=True)
class Debounce:
    """k of n windows to raise, m clean windows to clear."""

    raise_k: int = 2
    raise_n: int = 3
    clear_m: int = 3
    raise_score: float = math.inf  # classifiers: one window this sure raises at once
    merge_horizon: float = 300.0  # seconds an incident absorbs other labels on its targets
    quiet: float = 3.0  # seconds without a hit (and clear_m clean windows) before an end
    update_s: float = 5.0  # at most one periodic update per this many seconds
    hold: float = 30.0  # seconds from the last hit a quiet detection may resume (same label)
    recur: float = 3600.0  # seconds after a detection's last hit a new one may recur it
    # a classifier's own unknown (no benign model): its signed edge; inf: never raised
    unknown_edge: float = classifier_unknown.EDGE


def anomaly_scores(
    inputs: npt.NDArray[np.float32], outputs: npt.NDArray[np.float32]
) -> npt.NDArray[np.float64]:
    """One anomaly score per window from an anomaly model's output.

    A reconstruction (output shaped like the input) scores its mean squared error; a forecast
    of one step scores its error against the window's last step; a single output is the score.
    """
    n = len(inputs)
    out = outputs.reshape(n, -1).astype(np.float64)
    x = inputs.reshape(n, -1).astype(np.float64)
    if out.shape[1] == x.shape[1]:
        return np.asarray(np.mean((out - x) ** 2, axis=1), np.float64)
    if out.shape[1] == 1:
        return out[:, 0]
    last = inputs.reshape(n, -1, out.shape[1])[:, -1, :].astype(np.float64)
    return np.asarray(np.mean((out - last) ** 2, axis=1), np.float64)


def policy_for(
    bundle: Bundle,
    debounce: Debounce,
    calibration: SiteCalibration | None = None,
    *,
    open_set: bool = False,
) -> DecisionPolicy:
    """The decision policy a bundle's manifest implies (anomaly: one label, one threshold).

    A site calibration made for this bundle raises label thresholds (never lowers them); a
    bundle with a benign model decides on one more label, ``unknown`` (agent.openset), and so
    does a classifier without one that has benign and attack labels (agent.classifier_unknown).
    """
    policy = _manifest_policy(bundle, debounce)
    if calibration is not None and calibration.bundle_id != bundle.manifest.bundle_id:
        calibration = None  # made for another bundle
    if calibration is not None:
        policy = _calibrated(policy, calibration)
    if not open_set:
        unknown = ClassifierUnknown.of(policy) if bundle.manifest.task != "anomaly" else None
        if unknown is None:
            return policy
        edge = debounce.unknown_edge
        if calibration is not None:
            edge = max(edge, float(calibration.thresholds.get(openset.UNKNOWN, edge)))
        return unknown.extend(policy, edge)
    return dataclasses.replace(
        policy,
        labels=openset.fused_labels(policy.labels),
        categories=(*policy.categories, openset.UNKNOWN_CATEGORY),
        thresholds=(*policy.thresholds, openset.UNKNOWN_THRESHOLD),
    )


def _calibrated(policy: DecisionPolicy, calibration: SiteCalibration) -> DecisionPolicy:
    thresholds = tuple(
        max(t, float(calibration.thresholds.get(label, t)))
        for label, t in zip(policy.labels, policy.thresholds, strict=True)
    )
    return dataclasses.replace(policy, thresholds=thresholds)


def _manifest_policy(bundle: Bundle, debounce: Debounce) -> DecisionPolicy:
    m = bundle.manifest
    if m.task == "anomaly":
        label = m.labels[0] if len(m.labels) == 1 else "anomaly"
        threshold = m.thresholds.get("anomaly", m.thresholds.get(label))
        if threshold is None:
            raise BundleError("bundle thresholds: an anomaly model needs thresholds['anomaly']")
        if accumulator_spec(m.extra) is not None:
            threshold = 1.0  # the slot decides on the accumulator's ratio (agent.accumulate)
        return DecisionPolicy(
            (label,),
            (str(m.categories.get(label, "anomaly")),),
            (float(threshold),),
            debounce.raise_k,
            debounce.raise_n,
            debounce.clear_m,
            merge_horizon_s=debounce.merge_horizon,
            quiet_s=debounce.quiet,
            update_s=debounce.update_s,
            hold_s=debounce.hold,
            recur_s=debounce.recur,
        )
    return DecisionPolicy.from_manifest(
        m.labels,
        m.categories,
        m.thresholds,
        raise_k=debounce.raise_k,
        raise_n=debounce.raise_n,
        clear_m=debounce.clear_m,
        raise_score=debounce.raise_score,
        merge_horizon_s=debounce.merge_horizon,
        quiet_s=debounce.quiet,
        update_s=debounce.update_s,
        hold_s=debounce.hold,
        recur_s=debounce.recur,
    )


@dataclass(frozen=True)
class SlotBundle:
    """A verified bundle checked against one slot's source, with what the slot runs it with.

    ``policy`` is the manifest's (a site calibration may raise its thresholds later); ``benign``
    is the bundle's benign model, loaded once here and reused when the bundle is activated.
    """

    bundle: Bundle
    benign: openset.BenignModel | None
    policy: DecisionPolicy


def fit_bundle(
    bundle: Bundle, feature_set: FeatureSet, step: StepSpec, debounce: Debounce, source: str = ""
) -> SlotBundle:
    """BundleError unless ``bundle`` fits a slot on this source (schema, step, window, policy).

    ``source`` names the source in a step mismatch, so the message says where to set the step.
    """
    check_compatible(bundle.manifest, feature_set, step, bundle.manifest.window, source)
    benign = openset.load_benign_model(bundle)
    policy = policy_for(bundle, debounce, open_set=benign is not None)
    return SlotBundle(bundle, benign, policy)


class ModelSlot:
    """Runs one model on one source's steps; ``push`` returns the events of the new windows."""

    def __init__(
        self,
        name: str,
        source: str,
        feature_set: FeatureSet,
        step: StepSpec,
        bundle: Bundle | SlotBundle,
        debounce: Debounce | None = None,
        *,
        on_latency: Callable[[float], None] | None = None,
        calibration: SiteCalibration | None = None,
    ) -> None:
        self.name = name
        self.calibration = calibration
        # called with every scored window's raw scores: site calibration collects these
        self.on_scores: ScoreHook | None = None
        self.source = source
        self.feature_set = feature_set
        self.step = step
        self.debounce = debounce or Debounce()
        self._on_latency = on_latency
        self._lock = threading.Lock()
        self._staged: SlotBundle | None = None
        self._tail: npt.NDArray[np.float32] = np.zeros((0, feature_set.width), np.float32)
        self._evidence: list[EvidenceRef] = []
        self._benign: openset.BenignModel | None = None
        self._fusion: openset.Fusion | None = None
        self._unknown: ClassifierUnknown | None = None
        self._start_quiet = 0  # a stream's first windows in which no label hits (calibration)
        self._accumulator: Accumulator | None = None
        self._activate(self._fitted(bundle))
        self.windows_seen = 0
        self._first_ns: int | None = None  # the stream's first step: the start period's clock
        self.windows_scored = 0

    @property
    def benign(self) -> openset.BenignModel | None:
        """The bundle's benign model, None for a single-model bundle."""
        return self._benign

    @property
    def classifier_unknown(self) -> bool:
        """The classifier decides ``unknown`` on its own (no benign model; see policy_for)."""
        return self._unknown is not None

    @property
    def bundle_id(self) -> str:
        """Id of the bundle scoring windows now."""
        return self.bundle.manifest.bundle_id

    @property
    def latest(self) -> Bundle:
        """The bundle staged to take over, else the one scoring now (what updates compare to)."""
        with self._lock:
            return self._staged.bundle if self._staged is not None else self.bundle

    def check(self, bundle: Bundle) -> SlotBundle:
        """The bundle fitted to this slot's source; BundleError unless it fits."""
        return fit_bundle(bundle, self.feature_set, self.step, self.debounce, self.source)

    def _fitted(self, bundle: Bundle | SlotBundle) -> SlotBundle:
        return bundle if isinstance(bundle, SlotBundle) else self.check(bundle)

    def stage(self, bundle: Bundle | SlotBundle) -> None:
        """Queue a verified, compatible bundle to take over at the next window boundary."""
        fitted = self._fitted(bundle)
        with self._lock:
            self._staged = fitted

    def push(self, batch: StepBatch, sample_every: int = 1) -> list[Event]:
        """Score the windows these steps complete (every ``sample_every``-th when behind)."""
        events = self._swap_if_staged(batch)
        if len(batch) == 0:
            return events
        if self._first_ns is None:
            self._first_ns = int(batch.start_ns[0])
        # every step advances the stuck test and the cross check, sampled or not, so runs and
        # averages count real steps
        stuck = self._accumulator.step_ratios(batch.values) if self._accumulator else None
        held = len(self._tail)
        rows = np.concatenate((self._tail, batch.values), axis=0)
        tail = self._evidence
        fresh = batch.evidence or (None,) * len(batch)
        windows = sliding_windows(rows, self.window)
        keep = max(rows.shape[0] - (self.window - 1), 0)
        self._tail = rows[keep:].copy()
        self._evidence = _bounded(
            [tail[r] if r < held else (fresh, r - held) for r in range(keep, rows.shape[0])]
        )
        if len(windows) == 0:
            return events
        first = self.windows_seen
        self.windows_seen += len(windows)
        # Deterministic sampling: window number i is scored when i % sample_every == 0.
        numbers = np.arange(first, first + len(windows), dtype=np.int64)
        picked = np.nonzero((numbers % sample_every) == 0)[0]
        if len(picked) == 0:
            return events
        # Each step is scaled once (not once per window it falls in); unsampled, the windows
        # stay views of the steps and ``_score`` copies one chunk at a time.
        scaled = sliding_windows(self.bundle.manifest.scaler.transform(rows), self.window)
        if sample_every != 1:
            windows, scaled = windows[picked], scaled[picked]
        probabilities, anomaly = self._score(windows, scaled)
        scores = probabilities
        last = picked + self.window - 1 - held  # each window's last step in the batch
        elapsed = np.asarray(batch.start_ns, np.int64)[last] - self._first_ns
        if self._accumulator is not None and stuck is not None:
            summed = self._accumulator.scores(probabilities[:, 0])
            scores = np.maximum(summed, stuck[last]).reshape(-1, 1)
        scores = self.fused(scores, anomaly, numbers[picked], elapsed)
        if self._start_quiet and int(numbers[picked[0]]) < self._start_quiet:
            # the site's boot fired this classifier when it was calibrated: no hits yet
            scores = np.where((numbers[picked] < self._start_quiet)[:, None], 0.0, scores)
        self.windows_scored += len(picked)
        ends = np.asarray(batch.start_ns, np.int64)[last] + self._step_ns
        window = self.window

        def evidence_at(k: int) -> Callable[[], Evidence]:
            j = int(picked[k])
            refs = [tail[r] if r < held else (fresh, r - held) for r in range(j, j + window)]
            return functools.partial(_merged, refs)

        found, busy = self.decider.observe_many(ends, scores, evidence_at)
        events += found
        if self.on_scores is not None:
            at = numbers[picked]
            early = starting(at, elapsed, START_WINDOWS, START_SECONDS)
            self.on_scores(ends, probabilities, anomaly, busy, at, early)
        return events

    def calibrate(self, calibration: SiteCalibration | None) -> None:
        """Adopt a site calibration (None: the bundle's own thresholds) between two windows.

        Refused (CalibrationError) while a detection is open: thresholds must not move under
        an attack in progress, and one made for another bundle is refused too.
        """
        if self.decider.active_labels:
            raise CalibrationError(
                f"calibration: refused while a detection is active ({self.decider.active_labels})"
            )
        if calibration is not None and calibration.bundle_id != self.bundle_id:
            raise CalibrationError(
                f"calibration: made for bundle {calibration.bundle_id}, running {self.bundle_id}"
            )
        self.calibration = calibration
        self._build_decider()

    def close(self, time_ns: int | None = None) -> list[Event]:
        """End the open detections (shutdown, end of a replay).

        Without ``time_ns`` they end at the last window seen, on the stream's clock (capture
        time for a replayed file), never at the wall clock of the shutdown.
        """
        if time_ns is None:
            time_ns = self.decider.last_window_ns
        return self.decider.close(time_ns if time_ns is not None else time.time_ns())

    def _score(
        self, windows: npt.NDArray[np.float32], scaled: npt.NDArray[np.float32] | None = None
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64] | None]:
        """Scale, run the model(s): one score per label, and the benign model's raw scores.

        ``scaled``: the same windows already scaled (else they are scaled here). In bounded
        chunks: a conv net's activations grow with the batch, so a backlog of windows must not
        become one huge allocation (resident memory is the budget on a Pi).
        """
        if scaled is None:
            scaled = self.bundle.manifest.scaler.transform(windows)
        parts = [
            self._score_chunk(windows[i : i + MAX_BATCH], scaled[i : i + MAX_BATCH])
            for i in range(0, len(windows), MAX_BATCH)
        ]
        scores = np.concatenate([p[0] for p in parts])
        if self._benign is None:
            return scores, None
        return scores, np.concatenate([p[1] for p in parts if p[1] is not None])

    def fused(
        self,
        scores: npt.NDArray[np.float64],
        anomaly: npt.NDArray[np.float64] | None,
        numbers: npt.NDArray[np.int64],
        elapsed: npt.NDArray[np.int64],
    ) -> npt.NDArray[np.float64]:
        """The scores the decider takes: fused with the benign model's (a pair), or with the
        classifier's own ``unknown`` (a classifier with benign and attack labels), else as is.
        ``numbers``: each window's number in the stream; ``elapsed``: ns since its start."""
        if self._fusion is not None and anomaly is not None:
            return self._fusion.fuse(scores, anomaly, numbers, elapsed)
        if self._unknown is not None:
            return self._unknown.fuse(scores)
        return scores

    def _score_chunk(
        self, windows: npt.NDArray[np.float32], scaled: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64] | None]:
        manifest = self.bundle.manifest
        x = manifest.shape_inputs(scaled)
        began = time.perf_counter()
        out = self.bundle.model.predict(x)
        benign = self._benign
        anomaly = benign.scores(np.ascontiguousarray(windows)) if benign is not None else None
        if self._on_latency is not None:
            self._on_latency((time.perf_counter() - began) / len(x))
        if manifest.task == "anomaly":
            return anomaly_scores(x, out).reshape(-1, 1), anomaly
        return out.reshape(len(x), -1).astype(np.float64), anomaly

    def _build_decider(self) -> None:
        """The decider (and fusion) for the bundle and calibration in force."""
        bundle = self.bundle
        calibration = self.calibration
        if calibration is not None and calibration.bundle_id != bundle.manifest.bundle_id:
            logger.warning(
                "%s: calibration made for %s ignored (running %s)",
                self.name,
                calibration.bundle_id,
                bundle.manifest.bundle_id,
            )
            calibration = self.calibration = None
        benign = self._benign
        groups = benign.spec.groups if benign is not None else None
        edges = calibration.group_thresholds if calibration is not None else None
        if calibration is not None and len(edges or ()) != len(groups.groups if groups else ()):
            logger.warning(
                "%s: calibration's group edges do not fit the bundle: ignored", self.name
            )
            calibration = self.calibration = None
        policy = policy_for(bundle, self.debounce, calibration, open_set=benign is not None)
        self.decider = Decider(policy, bundle.manifest.bundle_id, self.source)
        self._fusion = None
        n = len(bundle.manifest.labels)
        self._unknown = None
        if benign is None and len(policy.labels) == n + 1:  # the classifier's own unknown
            self._unknown = ClassifierUnknown.of(policy, n)
        self._start_quiet = calibration.start_quiet_windows if calibration is not None else 0
        if benign is not None:
            floor = benign.spec.threshold
            # the bundle's signed stream-start edge holds until a calibration brings the site's
            # own; like the steady floor, a calibration only ever raises it
            start = benign.spec.start_threshold
            span = benign.spec.start_windows or START_WINDOWS
            seconds = 0.0  # a signed edge covers windows (fitted on recordings' first windows)
            grouped = calibration is not None and groups is not None and edges is not None
            if grouped and groups is not None:  # the largest group ratio from now on
                start = groups.start_threshold
                span = groups.start_windows or START_WINDOWS
            if calibration is not None and calibration.anomaly_threshold is not None:
                floor = max(floor, calibration.anomaly_threshold)
                if calibration.start_anomaly_threshold is not None:
                    start = _highest(start, calibration.start_anomaly_threshold)
                    span, seconds = START_WINDOWS, calibration.start_seconds
            n = len(bundle.manifest.labels)
            self._fusion = openset.Fusion(
                tuple(i for i in policy.watched() if i < n),
                policy.thresholds[:n],
                floor,
                benign.spec.threshold,
                start_threshold=start,
                start_windows=span if start is not None else 0,
                start_seconds=seconds if start is not None else 0.0,
                group_edges=edges if grouped else None,
            )

    def _swap_if_staged(self, batch: StepBatch) -> list[Event]:
        """Between windows: adopt a staged bundle, ending the old model's open detections."""
        with self._lock:
            staged, self._staged = self._staged, None
        if staged is None:
            return []
        if len(batch):
            when = int(batch.start_ns[0])
        else:  # the stream's clock (a replay's is the capture's), not the wall's: its last window
            when = self.decider.last_window_ns or time.time_ns()
        ended = self.decider.close(when)
        old = self.bundle_id
        self._activate(staged, keep_tail=True)
        logger.info("%s: bundle %s replaced %s", self.name, self.bundle_id, old)
        return ended

    def _activate(self, fitted: SlotBundle, *, keep_tail: bool = False) -> None:
        """Make a fitted bundle the scoring model (its window may differ from the last one's)."""
        bundle, benign = fitted.bundle, fitted.benign
        window = bundle.manifest.window
        old_tail, old_evidence = self._tail, self._evidence
        self.bundle = bundle
        self._benign = benign
        self.window = window
        self._step_ns = self.step.size_ns if self.step.kind == "time" else 0
        # a new bundle starts from no evidence: its scores are on another scale
        spec = accumulator_spec(bundle.manifest.extra)
        self._accumulator = Accumulator(spec) if spec is not None else None
        self._build_decider()
        keep = window - 1
        # A padding bundle starts the stream with the all-zero steps it was trained with, so
        # the first step already gives a window; a swap keeps the steps seen and pads only
        # what is missing (as if the stream had started then).
        start = lead_in(window, self.feature_set.width, bundle.manifest.padding)
        kept = old_tail[len(old_tail) - keep :] if keep_tail and keep > 0 else start[:0]
        kept_evidence = old_evidence[len(old_evidence) - len(kept) :] if len(kept) else []
        self._tail = np.concatenate((start[len(kept) :], kept), axis=0).astype(np.float32)
        padded: list[EvidenceRef] = [(_NO_EVIDENCE, 0)] * (len(self._tail) - len(kept))
        self._evidence = padded + kept_evidence


def _highest(*edges: float | None) -> float | None:
    """The highest of the edges given, None when there is none."""
    given = [e for e in edges if e is not None]
    return max(given) if given else None


def _summarised(refs: list[EvidenceRef]) -> list[Evidence | None]:
    """The steps' evidence, each lazy batch summarised once over the steps it holds here."""
    spans: dict[int, tuple[Sequence[Evidence | None], int, int]] = {}
    for seq, i in refs:
        _, low, high = spans.get(id(seq), (seq, i, i))
        spans[id(seq)] = (seq, min(low, i), max(high, i))
    for seq, low, high in spans.values():
        summarise(seq, low, high + 1)
    return [seq[i] for seq, i in refs]


def _merged(refs: list[EvidenceRef]) -> Evidence:
    """A window's evidence: its steps' summaries merged."""
    return Evidence.merge(_summarised(refs))


def _bounded(refs: list[EvidenceRef]) -> list[EvidenceRef]:
    """The kept steps' evidence, summarised now when their batches hold too many packets.

    A lazy batch holds its packets until every step is summarised, so a flood that fills a
    step with millions of packets must not stay lazy in the slot's tail.
    """
    batches = {id(seq): seq for seq, _ in refs}
    if sum(held_packets(seq) for seq in batches.values()) <= MAX_PENDING_PACKETS:
        return refs
    return [((evidence,), 0) for evidence in _summarised(refs)]


def describe(bundle: Bundle) -> dict[str, Any]:
    """The model-state fields a sink publishes on ``.../model``."""
    m = bundle.manifest
    return {
        "bundle_id": m.bundle_id,
        "version": m.version,
        "feature_set": m.feature_set,
        "schema_id": m.schema_id,
        "model_type": m.model_type,
        "task": m.task,
        "quantization": m.quantization,
        "kernels": bundle.model.kernels,  # xnnpack or builtin: what runs it on this CPU
        "window": m.window,
        "step": m.step.to_dict(),
        "padding": m.padding,
        "labels": list(m.labels),
        "signer": bundle.signer,
        "metrics": dict(m.metrics),
        "open_set": openset.describe(m),
    }


def calibration_state(slot: ModelSlot, collecting: bool = False) -> dict[str, Any]:
    """The ``calibration`` field of the ``model`` topic: what thresholds are in force."""
    if slot.calibration is not None:
        return {"state": "calibrated", **slot.calibration.to_dict()}
    return {"state": "collecting" if collecting else "none"}
