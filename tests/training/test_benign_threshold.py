"""The benign model's signed edge: the held-out quantile, raised to a rate a site can bear."""

from __future__ import annotations

import numpy as np

from agent.calibration import tail_threshold
from training.openset import BenignTraining, _threshold


def test_without_a_clock_the_edge_is_the_held_out_quantile() -> None:
    scores = np.random.default_rng(0).lognormal(0.0, 0.5, 300)
    edge = _threshold(scores, 4, BenignTraining())
    assert edge == np.quantile(scores, 0.999)


def test_with_a_clock_the_edge_aims_at_the_target_false_alarms_per_day() -> None:
    # 300 held-out windows have no real 99.9th percentile: it is about their maximum, which
    # benign windows of a whole day (86,400 one-second windows) would cross many times
    scores = np.random.default_rng(1).lognormal(0.0, 0.5, 300)
    options = BenignTraining(windows_per_day=86_400.0)
    edge = _threshold(scores, 4, options)
    fitted = float(np.exp(tail_threshold(np.log(scores), 4 / 86_400)))
    assert edge == max(fitted, float(np.quantile(scores, 0.999)))
    assert edge > scores.max()
    day = np.random.default_rng(2).lognormal(0.0, 0.5, 86_400)  # a day of the same traffic
    assert (day >= edge).sum() <= 4 * 5  # a handful of windows, not the ~86 of the quantile
    assert (day >= np.quantile(scores, 0.999)).sum() > 4 * 5


def test_a_group_aims_at_its_share_of_the_target() -> None:
    # eleven groups crossing at a rate each add up to eleven times it: each aims at 1 / 11
    scores = np.random.default_rng(3).lognormal(0.0, 0.5, 300)
    options = BenignTraining(windows_per_day=86_400.0)
    shared = _threshold(scores, 4, options, share=11)
    fitted = float(np.exp(tail_threshold(np.log(scores), 4 / 86_400 / 11)))
    assert shared == max(fitted, float(np.quantile(scores, 0.999)))
    assert shared > _threshold(scores, 4, options)
