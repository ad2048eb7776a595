"""What a model's window scores must do to raise, join, hold and end a detection.

The labels and their thresholds come from the bundle's manifest (a site calibration may raise
them); the counts and times from the agent's ``[debounce]`` settings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agent.families import is_benign


@dataclass(frozen=True)
class DecisionPolicy:
    """Labels, their categories and thresholds (from the manifest) and the debounce counts."""

    labels: tuple[str, ...]
    categories: tuple[str, ...]
    thresholds: tuple[float, ...]
    raise_k: int = 2
    raise_n: int = 3
    clear_m: int = 3
    update_every: int = 5
    # A single window at or above this score raises at once: a flood the model is sure of
    # should not wait k windows (time to detect <= 2 steps). inf disables it.
    raise_score: float = math.inf
    # A label raising inside an incident younger than this joins it (same targets); 0: never.
    merge_horizon_s: float = 300.0
    # An incident ends after clear_m clean windows AND this long without a hit: with packet
    # steps, clear_m windows of a flood last milliseconds, and a pause is not an attack's end.
    quiet_s: float = 0.0
    # Updates come every update_every windows but at most once per update_s (packet steps).
    update_s: float = 0.0
    # After quiet_s an incident is dormant, not ended: a hit of its main label on its
    # targets within hold_s of its last hit resumes it (a model fires on a long attack in
    # bursts), unless another label raised there and is still active. <= quiet_s: no
    # dormancy, ends at once.
    hold_s: float = 0.0
    # A detection raised by the main label of one that ended this recently, on its targets or
    # from its sender, recurs it: its events carry that one's incident id (agent.recurrence).
    recur_s: float = 0.0
    # Labels whose hits raise only themselves, never another label's k of n (a classifier's
    # own unknown: its hits would otherwise lift a weak guess of any class into an alarm).
    solo: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not len(self.labels) == len(self.categories) == len(self.thresholds):
            raise ValueError(
                f"labels ({len(self.labels)}), categories ({len(self.categories)}) and "
                f"thresholds ({len(self.thresholds)}) must have the same length"
            )
        if not 1 <= self.raise_k <= self.raise_n:
            raise ValueError(f"raise_k must be 1..raise_n, got {self.raise_k}/{self.raise_n}")
        if self.clear_m < 1 or self.update_every < 1:
            raise ValueError("clear_m and update_every must be >= 1")
        for name in ("merge_horizon_s", "quiet_s", "update_s", "hold_s", "recur_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    @classmethod
    def from_manifest(
        cls,
        labels: Sequence[str],
        categories: Sequence[str] | Mapping[str, str],
        thresholds: Mapping[str, float],
        *,
        raise_k: int = 2,
        raise_n: int = 3,
        clear_m: int = 3,
        raise_score: float = math.inf,
        merge_horizon_s: float = 300.0,
        quiet_s: float = 0.0,
        update_s: float = 0.0,
        hold_s: float = 0.0,
        recur_s: float = 0.0,
    ) -> DecisionPolicy:
        """Per-class thresholds by label name; ``default`` (else 0.5) for labels not listed."""
        default = float(thresholds.get("default", 0.5))
        if isinstance(categories, Mapping):
            cats = tuple(str(categories.get(label, label)) for label in labels)
        else:
            cats = tuple(str(c) for c in categories) if categories else tuple(labels)
        return cls(
            tuple(labels),
            cats,
            tuple(float(thresholds.get(label, default)) for label in labels),
            raise_k,
            raise_n,
            clear_m,
            raise_score=raise_score,
            merge_horizon_s=merge_horizon_s,
            quiet_s=quiet_s,
            update_s=update_s,
            hold_s=hold_s,
            recur_s=recur_s,
        )

    def watched(self) -> list[int]:
        """Indices of labels that raise events (benign ones never do)."""
        return [
            i
            for i, (label, cat) in enumerate(zip(self.labels, self.categories, strict=True))
            if not is_benign(label) and not is_benign(cat)
        ]
