"""The benign model's stream-start edge: fitted on the recordings' own first windows, as the
agent forms them, never below the steady edge."""

from __future__ import annotations

import numpy as np
import pytest

from agent.calibration import START_WINDOWS
from agent.openset import MAX_START_RATIO
from agent.stream_start import START_MARGIN
from training.datasets.base import Dataset
from training.openset import _start_edge, stream_starts

WIDTH = 3


def _dataset(labels: list[list[str]]) -> Dataset:
    """One group per list; step i of group g holds the value 100 g + i in every column."""
    x = np.concatenate(
        [100 * g + np.arange(len(run), dtype=np.float32) for g, run in enumerate(labels)]
    )
    groups = np.concatenate([np.full(len(run), g) for g, run in enumerate(labels)])
    return Dataset(
        kind="test",
        name="traffic",
        columns=[f"c{i}" for i in range(WIDTH)],
        x=np.repeat(x[:, None], WIDTH, axis=1).astype(np.float32),
        label_names=np.array([label for run in labels for label in run]),
        sequential=True,
        groups=groups.astype(np.int64),
        group_names=[f"g{g}" for g in range(len(labels))],
    )


def test_each_groups_first_windows_over_its_leading_benign_steps() -> None:
    benign, flood = "benign", "flood"
    data = _dataset([[benign] * 30, [benign] * 5 + [flood] * 10, [flood] + [benign] * 20])
    starts, numbers = stream_starts(data, 4)
    # group 0: START_WINDOWS windows from step 0; group 1: its 5 benign steps give 2 windows;
    # group 2 starts with an attack: not a benign stream start
    assert len(starts) == START_WINDOWS + 2
    assert numbers.tolist() == [*range(START_WINDOWS), 0, 1]
    assert starts[0, :, 0].tolist() == [0, 1, 2, 3]
    assert starts[START_WINDOWS, :, 0].tolist() == [100, 101, 102, 103]
    assert starts[-1, :, 0].tolist() == [101, 102, 103, 104]


def test_padded_starts_begin_with_the_agents_zero_rows() -> None:
    starts, _ = stream_starts(_dataset([["benign"] * 30]), 4, "zeros")
    assert len(starts) == START_WINDOWS
    assert starts[0, :, 0].tolist() == [0, 0, 0, 0]  # three pad rows, then step 0 (value 0)
    assert starts[1, :, 0].tolist() == [0, 0, 0, 1]


def test_the_start_edge_is_the_margin_over_the_highest_start_never_below_the_steady() -> None:
    numbers = np.arange(4)
    found = _start_edge(np.array([1.0, 9.0, np.nan, 1.0]), numbers, 6.0, 4)
    assert found == (pytest.approx(START_MARGIN * 9), 1 + 4)  # window 1 near the edge, 4 more
    assert _start_edge(np.array([1.0, 2.0]), numbers[:2], 6.0, 4) is None  # the steady edge
    assert _start_edge(np.array([np.nan]), numbers[:1], 6.0, 4) is None
    assert _start_edge(np.zeros(0), numbers[:0], 6.0, 4) is None
    huge = _start_edge(np.array([1e9]), np.array([9]), 6.0, 4)
    assert huge == (MAX_START_RATIO * 6.0, START_WINDOWS)  # what the agent loads
