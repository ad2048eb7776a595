"""``unknown`` from the classifier alone: sure a window is not benign, sure of no attack class.

A bundle without a benign model still shows when a window is none of the classes it learned:
its benign label gets almost no probability, yet no attack label reaches its threshold (the mass
spread over several attack labels, as on an attack kind it never saw). Such a window scores
``1 - p(benign)`` on one more label, ``unknown`` (family ``unknown``), raised at ``EDGE`` like any
label (k of n windows of its own: its hits never count toward another label's k, or a weak
class guess beside one would become an alarm), so an unseen attack is raised from its first
windows instead of when one attack label finally wins. A site calibration raises the edge from
the site's own windows as it raises any label's (never lowers it): on a network unlike the
training one, whose everyday windows the classifier finds un-benign, that quiets it there.

A bundle with a benign model decides ``unknown`` from that model instead (``agent.openset``).
``EDGE`` was chosen on generated traffic only (see the README's Benchmarks): of 0.8, 0.9 and
0.95, the one with the most first alarms within target and no more false alarms than without,
on the training network's held-out benign and on another site's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from agent.decide_policy import DecisionPolicy
from agent.families import UNKNOWN as UNKNOWN  # the label and its family alike

EDGE = 0.95  # benign at most 5 %
# The highest score: an int8 benign probability of 0 means "under one output step" (1/256) and
# reads as half a step, so no score reaches 1 (a site calibration silences it past every
# score where everyday windows reach the top more often than the target rate).
TOP = 1.0 - 1.0 / 512.0


def scores(
    probabilities: npt.NDArray[np.float64],
    benign: Sequence[int],
    watched: Sequence[int],
    thresholds: Sequence[float] | npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """(N, labels) -> (N,): ``1 - p(benign)`` where no watched label reaches its threshold, else 0.

    ``benign`` are the benign labels' columns (their probabilities add up), ``thresholds`` one
    per label; at most ``TOP``. A NaN probability gives NaN, which never reaches an edge.
    """
    probs = np.asarray(probabilities, np.float64)
    watch = list(watched)
    limits = np.asarray(thresholds, np.float64)[watch]
    confident = np.any(probs[:, watch] >= limits, axis=1)
    not_benign = np.minimum(1.0 - probs[:, list(benign)].sum(axis=1), TOP)
    return np.where(confident, 0.0, not_benign)


@dataclass(frozen=True)
class ClassifierUnknown:
    """The ``unknown`` column for one classifier policy: its benign and attack columns."""

    benign: tuple[int, ...]
    watched: tuple[int, ...]
    thresholds: tuple[float, ...]  # the classifier's, as in force (a calibration raises them)

    @classmethod
    def of(cls, policy: DecisionPolicy, labels: int | None = None) -> ClassifierUnknown | None:
        """For a classifier policy with benign and attack labels; None otherwise.

        ``labels``: how many of the policy's labels are the classifier's (the first ones; an
        ``unknown`` already appended after them is not), all of them when None.
        """
        n = len(policy.labels) if labels is None else labels
        watched = tuple(i for i in policy.watched() if i < n)
        benign = tuple(i for i in range(n) if i not in watched)
        if not watched or not benign or UNKNOWN in policy.labels[:n]:
            return None
        return cls(benign, watched, policy.thresholds[:n])

    def fuse(self, probabilities: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """(N, labels) -> (N, labels + 1): the classifier's scores, then ``unknown``."""
        column = scores(probabilities, self.benign, self.watched, self.thresholds)
        return np.concatenate((probabilities, column[:, None]), axis=1)

    def extend(self, policy: DecisionPolicy, edge: float = EDGE) -> DecisionPolicy:
        """``policy`` with the ``unknown`` label appended at ``edge``."""
        return dataclasses.replace(
            policy,
            labels=(*policy.labels, UNKNOWN),
            categories=(*policy.categories, UNKNOWN),
            thresholds=(*policy.thresholds, edge),
            solo=(*policy.solo, len(policy.labels)),  # it raises itself, lifts no class
        )
