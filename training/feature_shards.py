"""Training windows streamed from an ``iotids features DIR --out FEAT`` folder, one shard a worker.

Each ``<capture>.npz`` holds one recording's traffic steps (the agent's own features) and the
step and schema they were made with. Its class is the capture's name before the first ``-``
(``synflood-b.pcap.npz`` -> ``synflood``), as ``--dataset captures`` names it. Recordings are
dealt to workers whole (largest first, to the least loaded), so a worker opens only its own
files, one at a time, and never holds more than one recording's steps; every worker computes
the same deal from the file names and sizes alone.

Each recording is cut in time, 70 / 10 / 20 % of its steps for train / validation / test (the
``time-block`` split of one class run), and windows never cross a cut; with ``padding =
"zeros"`` the training part, which starts the recording, has its first windows padded as the
gateway pads a new stream.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.features.schema import FeatureSet
from agent.features.steps import StepSpec, stream_windows
from training import split
from training.config import ConfigError
from training.datasets.base import BENIGN_NAMES
from training.datasets.captures import label_from_name

SUFFIX = ".npz"
CHUNK_WINDOWS = 4096  # windows handed to tf.data at a time: bounds a worker's copy of them


@dataclass(frozen=True)
class Recording:
    """One ``.npz`` of steps: its path, class, and size on disk (to balance the deal)."""

    path: Path
    label: str
    size: int


@dataclass(frozen=True)
class Layout:
    """What every recording must share: the feature set and the step."""

    feature_set: FeatureSet
    step: StepSpec

    def code(self) -> npt.NDArray[np.float64]:
        """Numbers equal on two workers exactly when their layouts are (for a gather)."""
        kinds = ("time", "packets", "packets_or_time")
        schema = int(self.feature_set.schema_id[:12], 16)  # 48 bits: exact in a float64
        return np.array(
            [schema, kinds.index(self.step.kind), self.step.size, self.step.seconds], np.float64
        )


def recordings(folder: str) -> list[Recording]:
    """Every ``.npz`` directly in ``folder``, by name; none is a config error."""
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"train.path: {folder!r} is not a folder of `iotids features` .npz files")
    found = sorted(p for p in root.iterdir() if p.is_file() and p.name.endswith(SUFFIX))
    if not found:
        raise ConfigError(
            f"train.path: no {SUFFIX} files in {folder!r} (make them with "
            "`iotids features CAPTURES --out DIR`)"
        )
    return [
        Recording(p, label_from_name(Path(p.name[: -len(SUFFIX)])), p.stat().st_size) for p in found
    ]


def labels_of(found: list[Recording]) -> list[str]:
    """The classes, benign first then alphabetical (as every other dataset orders them)."""
    names = sorted({r.label for r in found})
    benign = [n for n in names if n.lower() in BENIGN_NAMES]
    return benign + [n for n in names if n not in benign]


def deal(found: list[Recording], workers: int) -> list[list[Recording]]:
    """Recordings per worker: largest first, each to the least loaded (ties: lowest index)."""
    if workers > len(found):
        raise ConfigError(
            f"train.cluster_spec: {workers} workers but {len(found)} recordings; "
            "a worker needs at least one (use fewer workers)"
        )
    shards: list[list[Recording]] = [[] for _ in range(workers)]
    load = [0] * workers
    for rec in sorted(found, key=lambda r: (-r.size, r.path.name)):
        least = load.index(min(load))
        shards[least].append(rec)
        load[least] += rec.size
    return [sorted(shard, key=lambda r: r.path.name) for shard in shards]


def read_steps(rec: Recording) -> tuple[npt.NDArray[np.float32], Layout]:
    """A recording's steps (S, F) and layout; a file that is not one is a config error."""
    try:
        with np.load(rec.path, allow_pickle=False) as data:
            steps = np.asarray(data["steps"], np.float32)
            columns = tuple(str(c) for c in data["columns"].tolist())
            name, _, version = str(data["feature_set"]).rpartition("-v")
            kind = str(data["step_kind"])
            seconds = float(data["step_seconds"]) if "step_seconds" in data else 0.0
            step = StepSpec(kind, float(data["step_size"]), seconds)  # type: ignore[arg-type]
            feature_set = FeatureSet(name, int(version), columns)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise ConfigError(
            f"train.path: {rec.path.name} is not an `iotids features` file ({exc})"
        ) from None
    if steps.ndim != 2 or steps.shape[1] != len(columns):
        raise ConfigError(
            f"train.path: {rec.path.name}: steps {steps.shape} vs {len(columns)} columns"
        )
    return steps[np.isfinite(steps).all(axis=1)], Layout(feature_set, step)


def parts(length: int) -> dict[str, tuple[int, int]]:
    """A recording's train / val / test step ranges, cut in time (70 / 10 / 20 %)."""
    cut = split.time_block_split(np.zeros(length, np.int64), np.zeros(length, np.str_))
    found = {name: cut.ranges[name][0] for name in split.SPLITS if cut.ranges[name]}
    return {name: found.get(name, (0, 0)) for name in split.SPLITS}


def windows(
    steps: npt.NDArray[np.float32],
    which: str,
    window: int,
    padding: str,
    fill: npt.NDArray[np.float32] | None,
) -> npt.NDArray[np.float32]:
    """The (N, T, F) windows of one split of one recording (a view where it can be)."""
    start, end = parts(len(steps))[which]
    pad = padding if which == "train" else "none"  # only the training part starts the stream
    return stream_windows(steps[start:end], window, pad, fill)


@dataclass
class Survey:
    """One worker's pass over its shard: windows per split and class, and a scaler sample."""

    counts: npt.NDArray[np.float64]  # (3, classes): train / val / test windows
    steps_read: int
    sample: npt.NDArray[np.float32]  # training steps, at most ``sample_rows``
    layout: Layout


def survey(
    shard: list[Recording],
    labels: list[str],
    window: int,
    padding: str,
    sample_rows: int,
    seed: int,
    progress: Callable[[], None] = lambda: None,
) -> Survey:
    """Read the shard once, a recording at a time: counts, steps read, training-step sample."""
    rng = np.random.default_rng(seed)
    counts = np.zeros((len(split.SPLITS), len(labels)), np.float64)
    sample: npt.NDArray[np.float32] | None = None
    keys = np.zeros(0)
    layout: Layout | None = None
    read = 0
    for rec in shard:
        steps, this = read_steps(rec)
        if layout is not None and this != layout:
            raise ConfigError(f"train.path: {rec.path.name} has another feature set or step")
        layout = this
        progress()  # reading is this worker's share of the work: the others wait for it
        read += len(steps)
        for row, which in enumerate(split.SPLITS):
            counts[row, labels.index(rec.label)] += len(
                windows(steps, which, window, padding, None)
            )
        start, end = parts(len(steps))["train"]
        train = steps[start:end]
        # bottom-k of uniform keys: a uniform sample of every training step seen so far
        sample = train if sample is None else np.concatenate([sample, train])
        keys = np.concatenate([keys, rng.random(len(train))])
        if len(sample) > sample_rows:
            keep = np.sort(np.argpartition(keys, sample_rows)[:sample_rows])
            sample, keys = sample[keep], keys[keep]
    assert layout is not None  # a shard is never empty (deal)
    assert sample is not None
    return Survey(counts, read, sample, layout)


def batches(
    shard: list[Recording],
    which: str,
    labels: list[str],
    window: int,
    padding: str,
    scaler: Any,
    to_input: Any,
) -> Iterator[tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]]:
    """Scaled model inputs and class indexes of one split, at most CHUNK_WINDOWS at a time."""
    fill = scaler.transform(np.zeros((1, len(scaler.min)), np.float32))[0]
    for rec in shard:
        steps, _ = read_steps(rec)
        w = windows(scaler.transform(steps), which, window, padding, fill)
        y = labels.index(rec.label)
        for i in range(0, len(w), CHUNK_WINDOWS):
            chunk = np.ascontiguousarray(w[i : i + CHUNK_WINDOWS])
            yield to_input(chunk), np.full(len(chunk), y, np.int64)
