"""Decoded packets to traffic-v1 steps plus each step's evidence, shared by pcap and live.

The featurizer computes the model's inputs; beside it this keeps, per step, the counts and
busiest sources and ports that an event reports as evidence. Evidence
is reduced to a top-k summary as soon as a step closes, so memory stays bounded under floods.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from agent.decide import Evidence, step_evidence
from agent.features.packets import PacketTable
from agent.features.steps import StepSpec
from agent.sources import StepBatch

logger = logging.getLogger(__name__)


class TrafficStepper:
    """Feeds packet tables to a TrafficFeaturizer and pairs every finished step with evidence."""

    def __init__(self, step: StepSpec) -> None:
        from agent.features.traffic import TRAFFIC_V1, TrafficFeaturizer

        self.step = step
        self.feature_set = TRAFFIC_V1
        self._featurizer = TrafficFeaturizer(step)
        self._pending: list[PacketTable] = []  # packets of steps not finished yet

    def push(self, table: PacketTable) -> StepBatch:
        """Add decoded packets (time-ordered); returns the steps they finished."""
        if len(table):
            self._pending.append(table)
        return self._batch(self._featurizer.push(table))

    def advance(self, now_ns: int) -> StepBatch:
        """Close the time steps that ended by ``now_ns`` (live capture on a quiet link)."""
        return self._batch(self._featurizer.advance(now_ns))

    def flush(self) -> StepBatch:
        """Close the last, partial step (end of a capture file)."""
        return self._batch(self._featurizer.flush())

    def _batch(self, steps: Any) -> StepBatch:
        """A StepBatch of the featurizer's steps with evidence cut from the pending packets."""
        starts = np.asarray(steps.start_ns, np.int64)
        values = np.asarray(steps.values, np.float32)
        if starts.shape[0] == 0:
            return StepBatch(starts, values)
        evidence = self._evidence(starts, np.asarray(steps.packets, np.int64))
        return StepBatch(starts, values, evidence)

    def _evidence(self, starts: Any, counts: Any) -> tuple[Evidence | None, ...]:
        """Evidence per finished step; the packets of those steps leave the pending list."""
        table = PacketTable.concat(self._pending) if len(self._pending) != 1 else self._pending[0]
        if self.step.kind == "time":
            bounds = np.searchsorted(table.ts_ns, starts + self.step.size_ns, side="left")
        else:
            # packet-count steps (with or without a time limit) hold consecutive packets, and
            # an idle step holds none: the counts alone cut the pending packets
            bounds = np.minimum(np.cumsum(counts), len(table))
        ends = np.maximum.accumulate(bounds)
        begin = int(ends[-1])
        step = np.repeat(np.arange(len(ends), dtype=np.int64), np.diff(np.r_[0, ends]))
        found = step_evidence(table.take(slice(0, begin)), step, len(ends))
        rest = table.take(slice(begin, None))
        self._pending = [rest] if len(rest) else []
        return tuple(found)
