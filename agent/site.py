"""Site calibration while the agent runs: collect a period of scores, then adopt thresholds.

Attached to a model slot when the config has a ``[calibration]`` table and the state
directory holds no calibration for the slot's bundle. The slot keeps detecting with the
bundle's signed thresholds the whole time (the classifier stays armed); windows inside an open
detection are marked and left out while rare (``agent.calibration``). Once the collected
windows span ``duration`` seconds of traffic the thresholds are computed
(``agent.calibration.compute``), written atomically to the state directory and adopted — but
not while a detection is open: then adoption waits for the next quiet batch. A new bundle
(remote update) restarts the collection: a calibration belongs to one bundle.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt

from agent import calibration as cal
from agent.calibration_collect import Collector
from agent.inference import ModelSlot, calibration_state, describe

logger = logging.getLogger(__name__)


class SiteCalibrator:
    """Collects one slot's window scores for a calibration period, then calibrates it."""

    def __init__(
        self,
        slot: ModelSlot,
        state_dir: str | Path,
        duration_s: float,
        target_per_day: float,
        publish: Callable[[Mapping[str, object]], None],
        attack_free: bool = False,
    ) -> None:
        self.slot = slot
        self.path = cal.state_path(state_dir, slot.name)
        self.duration_s = duration_s
        self.target_per_day = target_per_day
        self.attack_free = attack_free
        self._publish = publish
        self._pending: cal.SiteCalibration | None = None
        self._start()
        slot.on_scores = self._on_scores

    @property
    def collecting(self) -> bool:
        """Still gathering scores (or waiting for a quiet moment to adopt them)."""
        return self.slot.calibration is None

    def _start(self) -> None:
        self.bundle_id = self.slot.bundle_id
        # steps with a time limit are at most that far apart, idle ones included: a longer gap
        # is the wall clock stepping (packet-count steps have no such bound)
        limit = self.slot.step.limit_ns
        self.collector = Collector(len(self.slot.bundle.manifest.labels), max_gap_ns=2 * limit)
        self._pending = None
        logger.info(
            "%s: calibrating on site traffic for %.0f s (bundle %s)",
            self.slot.name,
            self.duration_s,
            self.bundle_id,
        )

    def _on_scores(
        self,
        ends: npt.NDArray[np.int64],
        probabilities: npt.NDArray[np.float64],
        anomaly: npt.NDArray[np.float64] | None,
        busy: npt.NDArray[np.bool_],
        numbers: npt.NDArray[np.int64],
        early: npt.NDArray[np.bool_],
    ) -> None:
        if self.slot.bundle_id != self.bundle_id:
            self.slot.calibration = None
            self._start()
        if self.slot.calibration is not None:
            return
        if self._pending is None:
            self.collector.add(ends, probabilities, anomaly, busy, numbers, early)
            if self.collector.seconds < self.duration_s:
                return
            self._pending = self._compute()
            if self._pending is None:
                return
        self._adopt(self._pending)

    def _compute(self) -> cal.SiteCalibration | None:
        c, slot = self.collector, self.slot
        manifest = slot.bundle.manifest
        benign = slot.benign
        policy = slot.decider.policy
        n = len(manifest.labels)
        try:
            return cal.compute(
                bundle_id=slot.bundle_id,
                labels=manifest.labels,
                watched=[i for i in policy.watched() if i < n],
                signed=policy.thresholds[:n],
                probabilities=c.probabilities[: c.kept].astype(np.float64),
                anomaly=c.anomaly[: c.kept].astype(np.float64) if benign is not None else None,
                anomaly_floor=benign.spec.threshold if benign is not None else None,
                seconds=c.seconds,
                target_per_day=self.target_per_day,
                window=manifest.window,
                total=c.seen,
                in_detection=c.in_detection[: c.kept],
                start_anomaly=c.start_anomaly if benign is not None else None,
                unknown_edge=slot.debounce.unknown_edge if slot.classifier_unknown else None,
                start_probabilities=c.start_probabilities,
                start_ends=c.start_ends,
                steady=c.steady[: c.kept],
                attack_free=self.attack_free,
            )
        except cal.CalibrationError as exc:
            logger.warning("%s: %s; collecting again", slot.name, exc)
            self._start()
            return None

    def _adopt(self, found: cal.SiteCalibration) -> None:
        try:
            self.slot.calibrate(found)
        except cal.CalibrationError as exc:
            logger.info("%s: %s; adopting after it ends", self.slot.name, exc)
            return
        try:
            cal.save(found, self.path)
        except OSError as exc:  # a full SD card: calibrated now, calibrates again after restart
            logger.error("%s: calibration not saved (%s)", self.slot.name, exc)
        self._pending = None
        logger.info("%s: calibrated: %s", self.slot.name, found.to_dict())
        self._publish(
            {
                **describe(self.slot.bundle),
                "name": self.slot.name,
                "calibration": calibration_state(self.slot),
            }
        )


def saved_calibration(state_dir: str | Path, model: str) -> cal.SiteCalibration | None:
    """The calibration kept for ``model``, None when there is none or it is unreadable."""
    path = cal.state_path(state_dir, model)
    if not path.is_file():
        if path.exists() or path.is_symlink():  # a directory, a dangling link: say so
            logger.warning("%s: ignored (not a regular file)", path)
        return None
    try:
        return cal.load(path)
    except cal.CalibrationError as exc:
        logger.warning("%s: ignored (%s)", path, exc)
        return None
