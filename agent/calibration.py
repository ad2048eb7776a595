"""Site calibration: thresholds for THIS network's benign traffic, learned on the gateway.

A bundle's thresholds were set on the training network. On another site everyday traffic can
sit anywhere, so the agent collects the scores of the site's own windows for a calibration
period (or ``iotids agent calibrate`` does it offline on a capture) and sets each threshold so
that benign windows cross it about ``target_false_alarms_per_day`` times a day — never below
the bundle's signed threshold (the floor: calibration can only make the agent quieter than
the bundle's author measured, not more trigger-happy).

Attacks during calibration must not teach the agent that they are normal:

- the classifier stays armed: while calibrating, the agent detects (and reports) with the
  signed thresholds;
- windows inside an open detection, and windows the bundle flags (a confident attack class,
  far from benign when the bundle has a benign model), are left out as long as they are rare
  (at most ``MAX_EXCLUDED`` of the period). When more of a site's traffic is flagged, that IS
  the site's normal (a classifier from another network alarming all day) and it is calibrated
  on — reported as ``flagged_fraction``, with every alarm it raised published meanwhile;
- thresholds come from robust quantiles: the tail is extrapolated from the 90th and 99th
  percentiles (``CONTAMINATION``) assuming an exponential tail on a log / logit scale, so the
  top 1 % of the collected windows — where an attack that slipped through would sit — never
  sets a threshold.

A stream's start (a network booting: every device connecting at once) is a rare event the tail
fit never sees — once per calibration, inside its top 1 % — so a benign model's ``unknown`` edge
for its first ``START_WINDOWS`` windows is their own: ``START_MARGIN`` x the highest score the
calibration's stream start reached (one boot is one draw), never below the steady edge. Where
the calibration's own boot outlasted those windows (packet-count steps come faster than a boot
ends), the start period also lasts twice that boot's seconds, at most ``START_SECONDS``
(``start_seconds``). It applies to the first windows after the agent starts, when the site and
the gateway usually boot together. That edge gates ``unknown`` only, and a classifier without a
benign model has no score to put an edge on at all: when the calibration stream's own start
fired any label at the calibrated thresholds (the site's boot read as an attack; a pair's known
class where its window passed the benign model's signed gate), no label hits in a stream's first
``START_WINDOWS`` windows (``start_quiet_windows``) — another boot fires other labels, so all of
them wait; an attack under way when the agent starts is raised those windows later.

A benign model with feature groups (``agent.benign_groups``) scores each group apart: each
group's edge is its own tail at the target rate divided by the number of groups, so all of
them together still cross about the target rate, and a site whose everyday spread is in one
group (byte counts, packet timing) raises that group's edge only. Such a calibration moves the
agent from the one signed edge to the group edges (see ``agent.benign_groups``).

An operator who knows the period held no attack (a capture recorded at install time behind a
firewall, say) can say so (``attack_free``): then nothing is left out (every window is the
site's own) and each threshold and edge also sits ``START_MARGIN`` past the highest score the
period's steady windows reached: that many times a score, that many times the odds of a
probability (its stream start keeps the rules above). A site's rare everyday events (an SSH
session, a firmware download: a few windows an hour, inside the top 1 %) are then learned
instead of guarded against, each with the margin its boot gets: a period holds one of each, one
draw. The price is that an attack inside the period would be learned as the site's too.

The per-window rate aimed at is ``target * window / windows per day``: an odd step stays in
``window`` consecutive windows, which raise one alarm together.
Classifier probabilities are fitted on a logit scale floored at one int8 output step
(``PROBABILITY_FLOOR``), so a label that is "zero" nearly always is not read as a wide tail.

Numpy only. A calibration is a small JSON file naming the bundle it was made for; the agent
keeps it in its state directory (written atomically) and ignores one made for another bundle.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from agent import classifier_unknown, json_bounded
from agent.benign_groups import MAX_GROUPS
from agent.config_calibration import MIN_WINDOWS
from agent.stream_start import (
    START_MARGIN,
    START_SECONDS,
    START_WINDOWS,
    calibrated_start,
    raw_scores,
)

CALIBRATION_SCHEMA = "iotids.calibration/1"
CONTAMINATION = 0.01  # the top fraction of collected windows that never sets a threshold
MAX_EXCLUDED = 0.05  # flagged windows are excluded while they are at most this fraction
MAX_WINDOWS = 200_000  # collected windows kept (reservoir): bounded memory for any duration
EPS = 1e-6
# An int8 classifier's probabilities move in steps of 1/256: below one step a probability is
# "zero", and a logit of 1e-6 beside one of 1/256 would read as a wide tail and extrapolate to
# a threshold near 1 (a known class silenced on the site). One step is the floor of the fit.
PROBABILITY_FLOOR = 1.0 / 256.0
# A threshold past every probability (float or int8) and every unknown score: the label never
# hits on this site, whose everyday windows reach the top score more often than the target.
SILENCED = 1.0 + 1.0 / 256.0


def silenced(thresholds: Mapping[str, object]) -> list[str]:
    """The labels a calibration's ``thresholds`` switch off on its site, sorted."""
    return sorted(
        label
        for label, value in thresholds.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= SILENCED
    )


def effects(thresholds: Mapping[str, object], start_quiet_windows: object) -> list[str]:
    """What a calibration switches off, in words (empty: nothing): its silenced labels and a
    quiet stream start."""
    off = silenced(thresholds)
    said = [f"silenced on this site: {', '.join(off)}"] if off else []
    if isinstance(start_quiet_windows, int) and start_quiet_windows > 0:
        said.append(f"no label hits in a stream's first {start_quiet_windows} windows")
    return said


class CalibrationError(ValueError):
    """A calibration that cannot be made or used; one line says why."""


@dataclass(frozen=True)
class SiteCalibration:
    """Thresholds for one bundle on one site."""

    bundle_id: str
    thresholds: Mapping[str, float]  # classifier labels (only attack labels)
    anomaly_threshold: float | None  # raw benign-model score; None: single-model bundle
    target_false_alarms_per_day: float
    windows: int  # windows the thresholds were computed from
    excluded: int  # flagged windows left out
    flagged_fraction: float  # flagged or inside a detection
    seconds: float  # traffic time the windows span
    created: float = field(default_factory=time.time)
    # the unknown edge of a stream's first START_WINDOWS windows; None: the steady one
    start_anomaly_threshold: float | None = None
    # a grouped benign model's per-group edges (ratios to the signed ones); None: ungrouped
    group_thresholds: tuple[float, ...] | None = None
    # no label hits in a stream's first this many windows (the site's boot fired one)
    start_quiet_windows: int = 0
    # the start edge holds for the stream's first seconds too (0: its windows only)
    start_seconds: float = 0.0
    # the period was vouched attack-free: every window kept, thresholds past its highest scores
    attack_free: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON form (the state file, ``cal.json`` and the ``model`` topic's ``calibration``)."""
        return {
            "schema": CALIBRATION_SCHEMA,
            "bundle_id": self.bundle_id,
            "thresholds": dict(self.thresholds),
            "anomaly_threshold": self.anomaly_threshold,
            "target_false_alarms_per_day": self.target_false_alarms_per_day,
            "windows": self.windows,
            "excluded": self.excluded,
            "flagged_fraction": round(self.flagged_fraction, 6),
            "seconds": round(self.seconds, 3),
            "created": self.created,
            "start_anomaly_threshold": self.start_anomaly_threshold,
            "start_windows": START_WINDOWS if self.start_anomaly_threshold is not None else 0,
            "group_thresholds": (
                list(self.group_thresholds) if self.group_thresholds is not None else None
            ),
            "start_quiet_windows": self.start_quiet_windows,
            "start_seconds": self.start_seconds,
            "attack_free": self.attack_free,
        }

    @classmethod
    def from_dict(cls, raw: Any) -> SiteCalibration:
        """Parse and check; CalibrationError names the bad key."""
        if not isinstance(raw, Mapping) or raw.get("schema") != CALIBRATION_SCHEMA:
            raise CalibrationError(f"calibration: not an {CALIBRATION_SCHEMA} object")
        thresholds = raw.get("thresholds")
        if not isinstance(thresholds, Mapping) or not all(
            isinstance(k, str) and _number(v) for k, v in thresholds.items()
        ):
            raise CalibrationError("calibration: thresholds: expected an object of numbers")
        anomaly = raw.get("anomaly_threshold")
        if anomaly is not None and not (_number(anomaly) and anomaly > 0):
            raise CalibrationError("calibration: anomaly_threshold: expected a number > 0 or null")
        start = raw.get("start_anomaly_threshold")  # absent in older files
        if start is not None and not (_number(start) and start > 0 and anomaly is not None):
            raise CalibrationError(
                "calibration: start_anomaly_threshold: expected a number > 0 (with "
                "anomaly_threshold) or null"
            )
        groups = _group_thresholds(raw.get("group_thresholds"), anomaly)
        for key in ("target_false_alarms_per_day", "flagged_fraction", "seconds", "created"):
            if not _number(raw.get(key)):
                raise CalibrationError(f"calibration: {key}: expected a number")
        for key in ("windows", "excluded"):
            if not isinstance(raw.get(key), int) or isinstance(raw.get(key), bool):
                raise CalibrationError(f"calibration: {key}: expected an integer")
        if not isinstance(raw.get("bundle_id"), str):
            raise CalibrationError("calibration: bundle_id: expected a string")
        quiet = raw.get("start_quiet_windows", 0)  # absent in older files
        if isinstance(quiet, bool) or not isinstance(quiet, int) or not 0 <= quiet <= START_WINDOWS:
            raise CalibrationError(
                f"calibration: start_quiet_windows: expected a whole number 0..{START_WINDOWS}"
            )
        seconds = raw.get("start_seconds", 0.0)  # absent in older files
        if not (_number(seconds) and 0 <= seconds <= START_SECONDS):
            raise CalibrationError(
                f"calibration: start_seconds: expected a number 0..{START_SECONDS:g}"
            )
        attack_free = raw.get("attack_free", False)  # absent in older files
        if not isinstance(attack_free, bool):
            raise CalibrationError("calibration: attack_free: expected true or false")
        return cls(
            raw["bundle_id"],
            {k: float(v) for k, v in thresholds.items()},
            None if anomaly is None else float(anomaly),
            float(raw["target_false_alarms_per_day"]),
            int(raw["windows"]),
            int(raw["excluded"]),
            float(raw["flagged_fraction"]),
            float(raw["seconds"]),
            float(raw["created"]),
            None if start is None else float(start),
            groups,
            quiet,
            float(seconds),
            attack_free,
        )


def _group_thresholds(value: Any, anomaly: Any) -> tuple[float, ...] | None:
    """Per-group edges: absent or null, else 1 to MAX_GROUPS numbers > 0 (with an anomaly one)."""
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or not 1 <= len(value) <= MAX_GROUPS
        or not all(_number(v) and v > 0 for v in value)
        or anomaly is None
    ):
        raise CalibrationError(
            f"calibration: group_thresholds: expected 1 to {MAX_GROUPS} numbers > 0 (with "
            "anomaly_threshold) or null"
        )
    return tuple(float(v) for v in value)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def save(calibration: SiteCalibration, path: str | Path) -> None:
    """Write atomically: a temporary file beside ``path``, fsync, rename."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(calibration.to_dict(), handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


MAX_FILE_BYTES = 1 << 20


def load(path: str | Path) -> SiteCalibration:
    """Read a calibration file; CalibrationError for anything unreadable."""
    try:
        with Path(path).open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise CalibrationError(f"calibration: cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise CalibrationError(f"calibration: {path} is larger than {MAX_FILE_BYTES} bytes")
    try:
        raw = json_bounded.loads(data.decode("utf-8"))
    # ValueError: not UTF-8, not JSON, or an integer wider than an int64 (json_bounded)
    except (ValueError, RecursionError) as exc:
        raise CalibrationError(f"calibration: {path} is not valid JSON ({exc})") from None
    return SiteCalibration.from_dict(raw)


def state_path(state_dir: str | Path, model: str) -> Path:
    """Where the agent keeps model ``model``'s calibration."""
    return Path(state_dir) / f"calibration-{model}.json"


# --- the statistics ----------------------------------------------------------------------------


def tail_threshold(values: npt.NDArray[np.float64], exceed: float) -> float:
    """The value exceeded with probability ``exceed``, robust to a contaminated top 1 %.

    Where ``exceed`` is at least ``CONTAMINATION`` it is the empirical quantile. Beyond, the
    tail above the 90th percentile is taken as exponential (peaks over threshold) with its
    scale from the 90th and 99th percentiles: ``beta = (q99 - q90) / ln 10`` and the threshold
    is ``q99 + beta * ln(0.01 / exceed)``. The top 1 % is never looked at.
    """
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        raise CalibrationError("calibration: no finite scores")
    if exceed >= CONTAMINATION:
        return float(np.quantile(v, 1.0 - exceed))
    q90, q99 = np.quantile(v, [0.9, 1.0 - CONTAMINATION])
    beta = max(float(q99 - q90), 0.0) / math.log(10.0)
    return float(q99 + beta * math.log(CONTAMINATION / exceed))


def _logit(p: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    q = np.clip(p, PROBABILITY_FLOOR, 1.0 - EPS)
    return np.asarray(np.log(q) - np.log1p(-q), np.float64)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x > -700 else 0.0


def compute(
    *,
    bundle_id: str,
    labels: Sequence[str],
    watched: Sequence[int],
    signed: Sequence[float],
    probabilities: npt.NDArray[np.float64],
    anomaly: npt.NDArray[np.float64] | None,
    anomaly_floor: float | None,
    seconds: float,
    target_per_day: float,
    window: int = 1,
    total: int | None = None,
    in_detection: npt.NDArray[np.bool_] | None = None,
    start_anomaly: npt.NDArray[np.float64] | None = None,
    unknown_edge: float | None = None,
    start_probabilities: npt.NDArray[np.float64] | None = None,
    start_ends: npt.NDArray[np.int64] | None = None,
    steady: npt.NDArray[np.bool_] | None = None,
    attack_free: bool = False,
) -> SiteCalibration:
    """Thresholds from the site's window scores (classifier probabilities, benign-model scores).

    A window is flagged when an attack label reaches its SIGNED threshold (and, with a benign
    model, the window is far from benign at the signed floor): the bundle would call it an
    attack. Flagged windows are left out while rare (see the module's notes). ``total`` is
    how many windows the period had when only a sample of them is given. ``start_anomaly``
    are the benign-model scores of the stream's start period (``starting`` with
    ``START_WINDOWS`` and ``START_SECONDS``).
    A grouped benign model's scores are (N, 1 + groups), the raw score then the ratios to
    the signed group edges: the raw one flags, each group gets its own edge, and the start
    edge is the largest ratio's. ``unknown_edge``: the signed edge of a classifier's own
    ``unknown`` (``agent.classifier_unknown``), calibrated as one more label; None: it has none.
    ``start_probabilities``: the classifier's scores of the stream's first ``START_WINDOWS``
    windows (NaN rows: not seen; row for row with the first of ``start_anomaly``), for
    ``start_quiet_windows``: a silence, so it stays that short. ``start_ends``: the end times
    of the ``start_anomaly`` windows, row for row (None: the start period is its windows).
    ``attack_free``: the period is vouched to hold no attack (see the module's notes);
    ``steady`` marks the windows past the stream's start period, row for row (None: all), whose
    highest scores the thresholds then sit past.
    """
    n = len(probabilities)
    if n < MIN_WINDOWS:
        raise CalibrationError(f"calibration: {n} windows, need at least {MIN_WINDOWS}")
    if not seconds > 0:
        raise CalibrationError("calibration: the windows span no time")
    probs = np.asarray(probabilities, np.float64).reshape(n, -1)
    limits = np.asarray(signed, np.float64)
    watch = list(watched)
    flagged = np.any(probs[:, watch] >= limits[watch], axis=1) if watch else np.zeros(n, bool)
    if anomaly is not None and anomaly_floor is not None:
        flagged &= raw_scores(anomaly) >= anomaly_floor
    benign = [i for i in range(probs.shape[1]) if i not in watch]  # for a classifier's unknown
    if unknown_edge is not None:  # what the bundle says while calibrating: signed thresholds
        flagged |= classifier_unknown.scores(probs, benign, watch, limits) >= unknown_edge
    if in_detection is not None:
        flagged |= np.asarray(in_detection, bool)
    fraction = float(flagged.mean())
    keep = ~flagged if fraction <= MAX_EXCLUDED and not attack_free else np.ones(n, bool)
    # attack-free: past the highest score of the steady windows too (all of them are kept)
    highs = np.ones(n, bool) if steady is None else np.asarray(steady, bool).reshape(n)
    highs &= attack_free
    windows_per_day = (total or n) / seconds * 86_400.0
    # one odd step stays in ``window`` consecutive windows: one alarm per run of that many hits
    exceed = min(target_per_day * window / windows_per_day, 0.5)
    thresholds: dict[str, float] = {}
    for i in watch:
        fitted = _past_pile(probs[keep, i], exceed, float(limits[i]))
        thresholds[labels[i]] = max(fitted, _past_highest(probs[highs, i], 1.0 - PROBABILITY_FLOOR))
    in_force = [thresholds.get(labels[i], float(limits[i])) for i in range(len(labels))]
    if unknown_edge is not None:
        # scored as the agent will score it after this calibration: a window is confident of
        # a class at that class's calibrated threshold, so a class the site raised leaves its
        # windows to unknown, and the unknown edge must be learned on those too
        unknown = classifier_unknown.scores(probs, benign, watch, in_force)
        thresholds[classifier_unknown.UNKNOWN] = max(
            _past_pile(unknown[keep], exceed, unknown_edge),
            _past_highest(unknown[highs], classifier_unknown.TOP),
        )
    quiet = 0
    if start_probabilities is not None:
        start = np.asarray(start_probabilities, np.float64).reshape(-1, probs.shape[1])
        edge = thresholds.get(classifier_unknown.UNKNOWN)
        if anomaly is not None:
            # a pair's known classes pass where the benign model's raw score reaches the
            # signed floor (the fusion's gate); its unknown has the start edge instead
            gate = np.zeros(len(start), bool)  # a window never seen (NaN) is not let through
            if start_anomaly is not None and anomaly_floor is not None:
                gate = raw_scores(start_anomaly)[: len(start)] >= anomaly_floor
            start, edge = start[gate], None
        quiet = START_WINDOWS if _fired(start, benign, watch, in_force, edge) else 0
    anomaly_threshold: float | None = None
    groups: tuple[float, ...] | None = None
    if anomaly is not None and anomaly_floor is not None:
        every = np.asarray(anomaly, np.float64)
        scores = every[keep]
        if scores.ndim == 2:  # one edge per group (never below its signed one), the rate shared
            ratios = scores[:, 1:]
            share = exceed / ratios.shape[1]
            highest = every[highs, 1:].T
            groups = tuple(
                max(1.0, _log_tail(g, share), _past_highest(h, math.inf))
                for g, h in zip(ratios.T, highest, strict=True)
            )
            anomaly_threshold = anomaly_floor
        else:
            highest_raw = _past_highest(every[highs], math.inf)
            anomaly_threshold = max(anomaly_floor, _log_tail(scores, exceed), highest_raw)
    start_threshold, start_seconds = None, 0.0
    if start_anomaly is not None and anomaly_threshold is not None:
        start_threshold, start_seconds = calibrated_start(
            start_anomaly, start_ends, anomaly_threshold, groups
        )
    return SiteCalibration(
        bundle_id,
        thresholds,
        anomaly_threshold,
        target_per_day,
        int(keep.sum()),
        int(n - keep.sum()),
        fraction,
        seconds,
        start_anomaly_threshold=start_threshold,
        group_thresholds=groups,
        start_quiet_windows=quiet,
        start_seconds=start_seconds,
        attack_free=attack_free,
    )


def _fired(
    probs: npt.NDArray[np.float64],
    benign: list[int],
    watch: list[int],
    in_force: list[float],
    unknown_edge: float | None,
) -> bool:
    """Any window of ``probs`` hits a label at the thresholds ``in_force`` (one per label), or
    the classifier's own ``unknown`` at ``unknown_edge`` (None: it has none)."""
    if not watch or len(probs) == 0:
        return False
    if np.any(probs[:, watch] >= np.asarray(in_force)[watch]):
        return True
    if unknown_edge is None:
        return False
    return bool(np.any(classifier_unknown.scores(probs, benign, watch, in_force) >= unknown_edge))


def _past_pile(probs: npt.NDArray[np.float64], exceed: float, floor: float) -> float:
    """The probability site windows exceed at rate ``exceed`` (the tail fit on a logit scale),
    never below ``floor`` (the signed threshold).

    An int8 output moves in steps of 1/256, and a site's everyday windows may pile on one step
    (another network read as one attack class at the top probability, all day). Then the top
    1 % sits on the fitted edge itself and there is no tail to fit: the edge moves past the
    pile, to the next score above it, or past every score (``SILENCED``) when the pile is the
    highest — a threshold those windows would cross all day silences nothing.
    """
    edge = max(floor, _sigmoid(tail_threshold(_logit(probs), exceed)))
    finite = probs[np.isfinite(probs)]
    if exceed >= CONTAMINATION or len(finite) == 0:
        return edge
    top = float(np.quantile(finite, 1.0 - CONTAMINATION))
    if edge > top:
        return edge
    above = finite[finite > top]
    return max(edge, float(above.min())) if len(above) else SILENCED


def _past_highest(values: npt.NDArray[np.float64], top: float) -> float:
    """``START_MARGIN`` past the highest finite value: that many times a score (``top`` inf), that
    many times the odds of a probability (``top`` < 1); ``SILENCED`` when that is ``top`` or more
    (no score the label can take is above it); -inf when there is none."""
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return -math.inf
    highest = float(finite.max())
    if math.isinf(top):
        past = START_MARGIN * highest if highest > 0 else highest
    else:
        odds = START_MARGIN * highest / (1.0 - highest) if highest < 1.0 else math.inf
        past = odds / (1.0 + odds) if highest > 0 else highest
    past = max(past, float(np.nextafter(highest, math.inf)))
    return SILENCED if past >= top else past


def _log_tail(scores: npt.NDArray[np.float64], exceed: float) -> float:
    """``tail_threshold`` of positive scores on a log scale, back in score units."""
    logs = np.log(np.maximum(np.asarray(scores, np.float64), 1e-12))
    return math.exp(min(tail_threshold(logs, exceed), 700.0))
