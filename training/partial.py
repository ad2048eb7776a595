"""Padded-copy augmentation: training sees the partial windows the gateway scores first.

A padding bundle scores a new stream from its first step, with the missing steps replaced by
the agent's pad rows (``agent.features.steps.lead_in``). Recordings padded at their start give
only T-1 such windows each, so an attack's first, partly padded windows are a handful among
thousands. ``partial_windows = S`` adds, for a share S of the training windows whose last step
lies in the first ``HORIZON_WINDOWS`` x T steps of its class run (a recording's or an attack's
start), one copy with its first k steps (k drawn from 1..T-1) replaced by the same pad rows:
the window the gateway would score had the stream begun k steps later. Copies keep the
original's label and position (so onset weights apply to them alike). Only the training split
is augmented; validation and test stay what the gateway would see.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from agent.features.steps import lead_in

if TYPE_CHECKING:
    from training.train import Prepared

logger = logging.getLogger(__name__)

# windows whose last step is within this many window lengths of a run's start are candidates:
# the start of an attack is what the gateway sees first after it starts or a capture begins
HORIZON_WINDOWS = 4


@dataclass(frozen=True)
class Partial:
    """What the augmentation added (recorded in preprocess.json and the bundle's extra)."""

    share: float
    horizon_steps: int
    candidates: int
    copies: int
    transition_share: float = 0.0
    transitions: int = 0  # attack windows whose first steps were taken from benign windows

    def to_dict(self) -> dict[str, float | int | str]:
        return {
            "share": self.share,
            "horizon_steps": self.horizon_steps,
            "candidates": self.candidates,
            "copies": self.copies,
            "pad": "the agent's lead_in rows (scaled image of an all-zero step)",
            "transition_share": self.transition_share,
            "transitions": self.transitions,
        }


def pad_first(
    window: npt.NDArray[np.float32], k: int, fill: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """``window`` (T, F) with its first ``k`` steps replaced by the agent's pad rows."""
    length, width = window.shape
    if not 0 <= k < length:
        raise ValueError(f"k must be in 0..{length - 1}, got {k}")
    # lead_in(k + 1) gives k rows: exactly the rows a stream k steps short of T starts with
    pad = lead_in(k + 1, width, "zeros", fill)
    return np.concatenate((pad, window[k:]), axis=0).astype(window.dtype, copy=False)


def augment(
    x: npt.NDArray[np.float32],
    position: npt.NDArray[np.int64],
    share: float,
    fill: npt.NDArray[np.float32],
    seed: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], Partial]:
    """Padded copies of a share of the near-start windows of ``x`` (N, T, F).

    Returns the index of each copy's original (for its label, position and block), the copies
    (M, T, F), and the account. ``share`` 0 or T = 1 adds nothing.
    """
    length = x.shape[1]
    horizon = HORIZON_WINDOWS * length
    near = np.flatnonzero((position >= 0) & (position < horizon))
    if length < 2:
        near = near[:0]
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.permutation(near)[: round(share * len(near))]).astype(np.int64)
    ks = rng.integers(1, length, size=len(chosen)) if len(chosen) else np.zeros(0, np.int64)
    copies = np.empty((len(chosen), *x.shape[1:]), x.dtype)
    for i, (row, k) in enumerate(zip(chosen.tolist(), ks.tolist(), strict=True)):
        copies[i] = pad_first(x[row], int(k), fill)
    return chosen, copies, Partial(share, horizon, len(near), len(chosen))


def transitions(
    x: npt.NDArray[np.float32],
    position: npt.NDArray[np.int64],
    y: npt.NDArray[np.int64],
    benign: int,
    share: float,
    seed: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Copies of a share of the near-start attack windows whose first k steps are benign.

    On a gateway an attack starts after the site's own traffic: its first windows hold the
    last benign steps and then the attack's. Recordings of one class each never show that, so
    a copy takes its first k steps (k from 1..T-1) from the end of a random benign window.
    """
    length = x.shape[1]
    near = np.flatnonzero((position >= 0) & (position < HORIZON_WINDOWS * length) & (y != benign))
    sources = np.flatnonzero(y == benign)
    if length < 2 or not len(sources):
        near = near[:0]
    rng = np.random.default_rng([seed, 0x7A])
    chosen = np.sort(rng.permutation(near)[: round(share * len(near))]).astype(np.int64)
    copies = np.empty((len(chosen), *x.shape[1:]), x.dtype)
    for i, row in enumerate(chosen.tolist()):
        k = int(rng.integers(1, length))
        source = x[int(rng.choice(sources))]
        copies[i] = np.concatenate((source[length - k :], x[row][k:]), axis=0)
    return chosen, copies


def apply(prepared: Prepared, share: float, seed: int, transition_share: float = 0.0) -> Partial:
    """Append padded (and transition) copies to the training split; other splits untouched."""
    x = prepared.x["train"]
    n, length, width = len(x), prepared.spec.window, prepared.spec.features
    fill = prepared.scaler.transform(np.zeros((1, width), np.float32))[0]
    windows = x.reshape(n, length, width)  # cnn inputs carry a channel axis, the others not
    chosen, copies, account = augment(windows, prepared.position["train"], share, fill, seed)
    if transition_share > 0 and prepared.benign is not None:
        more, extra = transitions(
            windows,
            prepared.position["train"],
            prepared.y["train"],  # class indexes
            prepared.benign,
            transition_share,
            seed,
        )
        chosen, copies = np.concatenate((chosen, more)), np.concatenate((copies, extra))
        account = Partial(
            share,
            account.horizon_steps,
            account.candidates,
            account.copies,
            transition_share,
            len(more),
        )
    prepared.x["train"] = np.concatenate((x, copies.reshape(len(copies), *x.shape[1:])))
    for field in (prepared.y, prepared.block, prepared.position):
        field["train"] = np.concatenate((field["train"], field["train"][chosen]))
    logger.info(
        "partial windows: %d padded copies of %d training windows near a run's start (share %g)"
        "; %d with benign steps first (share %g)",
        account.copies,
        account.candidates,
        share,
        account.transitions,
        transition_share,
    )
    return account
