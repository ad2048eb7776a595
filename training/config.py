"""Training configuration: a frozen dataclass from flags or a TOML file, validated at load."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from agent import config_loader
from agent.scaling import KINDS as SCALERS
from training.models import MODEL_TYPES

MAX_AUGMENT = 10  # augmented rows per training row: more only costs time
SPLIT_METHODS = ("auto", "time-block", "blocks", "stratified", "by-file")
MAX_CONFIG_BYTES = 1 << 20  # a [train] file is a few hundred bytes
# Sizes past which a run only exhausts memory or never ends (a typo, or a hostile config):
# far above anything the README's recipes or the gateway use.
MAX_SIZES = {"window": 4096, "units": 4096, "members": 64, "seeds": 1000, "epochs": 100_000}
MAX_SEED = 2**32 - 1  # numpy's and TensorFlow's seeds are unsigned 32-bit


class ConfigError(config_loader.ConfigError):
    """A bad configuration value; the message names the key."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``iotids train`` needs; TOML keys and long flags share these names."""

    dataset: str
    path: str
    model: str
    out: str
    window: int = 16
    step: str = "1s"
    epochs: int = 30
    batch_size: int = 64
    patience: int = 4
    # early stopping never ends training before this epoch (a noisy first epochs' best is kept
    # otherwise, and the result swings with the seed)
    min_epochs: int = 10
    seed: int = 0
    seeds: int = 1  # train seeds seed..seed+N-1, report the spread, keep the best on validation
    units: int = 32
    dropout: float = 0.2
    members: int = 1  # dnn: sub-networks averaged inside the one model (a seed ensemble)
    # training windows weigh (balanced class weight) ** this: 1 balanced, 0.5 tempered, 0 none
    class_weight_power: float = 1.0
    distill: float = 0.0  # dnn/classifiers: weight of a RandomForest teacher's soft labels
    distill_augment: float = 0.0  # teacher-labelled new rows per training row (dnn tables)
    learning_rate: float = 1e-3
    target_fpr: float = 0.01
    # gru-forecast: threshold for at most this many alarms per day on held-out normal windows
    false_alarms_per_day: float = 1.0
    # per-attack-label thresholds at ``target_fpr`` on benign validation windows (not 0.5)
    calibrate_thresholds: bool = False
    threshold_floor: float = 0.2  # calibrated thresholds never go below this
    # weight x on windows whose last step is one of an attack run's first ``onset_steps``
    # (the windows the gateway must call to detect within 2 steps; rare among all windows)
    onset_weight: float = 1.0
    onset_steps: int = 2
    split: str = "auto"
    blocks: int = 10  # contiguous blocks per group for the "blocks" split
    test_files: tuple[str, ...] = ()
    val_files: tuple[str, ...] = ()
    label_mode: str | None = None
    # TOML mapping file: [[rule]] tables label capture files (glob, label, start, end, address,
    # family); a [families] table names any dataset's labels' families
    mapping: str | None = None
    label_column: str | None = None
    drop_columns: tuple[str, ...] = ()
    max_rows: int | None = None
    part: str | None = None  # synthetic: traffic or telemetry
    stream: bool = False
    # "zeros": each recording's first windows are padded with all-zero steps, as the gateway
    # pads a new stream (recorded in the bundle); "none": windows start at step T
    padding: str = "none"
    # "minmax" (clip, min-max to 0..1) or "quantile" (each feature through its training
    # quantiles: an int8 model's one input scale then resolves heavy-tailed features too)
    scaler: str = "minmax"
    # share of the training windows near a recording's or attack's start that get a copy with
    # their first k steps padded as the gateway pads a new stream (0: off)
    partial_windows: float = 0.0
    # a share of near-start attack windows copied with benign steps first (mid-stream starts)
    transition_windows: float = 0.0
    strict: bool = False  # a class with too few windows is an error, not a warning
    # multi-worker training: JSON cluster spec (a file, or inline) and this worker's index;
    # the data is a folder of `iotids features --out` recordings (dataset "features")
    cluster_spec: str | None = None
    worker_index: int | None = None
    cluster_timeout: float = 300.0  # seconds without the workers' progress: killed, 137
    representative: int = 300
    baseline_trees: int = 100
    verbose: int = 2

    def __post_init__(self) -> None:
        if self.model not in MODEL_TYPES:
            raise ConfigError(f"train.model: must be one of {MODEL_TYPES}, got {self.model!r}")
        if self.split not in SPLIT_METHODS:
            raise ConfigError(f"train.split: must be one of {SPLIT_METHODS}, got {self.split!r}")
        for key in (
            "window",
            "epochs",
            "batch_size",
            "units",
            "representative",
            "baseline_trees",
            "blocks",
            "onset_steps",
            "seeds",
            "min_epochs",
            "members",
        ):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                raise ConfigError(
                    f"train.{key}: must be a whole number >= 1, got {getattr(self, key)!r}"
                )
        for key, most in MAX_SIZES.items():
            if getattr(self, key) > most:
                raise ConfigError(f"train.{key}: at most {most}, got {getattr(self, key)!r}")
        _check_numbers(self)
        if not 0 < self.target_fpr < 1:
            raise ConfigError(f"train.target_fpr: must be in (0, 1), got {self.target_fpr!r}")
        if not isinstance(self.false_alarms_per_day, int | float) or not (
            0 < self.false_alarms_per_day <= 86_400
        ):
            raise ConfigError(
                "train.false_alarms_per_day: must be in (0, 86400], "
                f"got {self.false_alarms_per_day!r}"
            )
        if not 0 < self.threshold_floor < 1:
            raise ConfigError(
                f"train.threshold_floor: must be in (0, 1), got {self.threshold_floor!r}"
            )
        if not isinstance(self.onset_weight, int | float) or self.onset_weight < 1:
            raise ConfigError(f"train.onset_weight: must be >= 1, got {self.onset_weight!r}")
        if not isinstance(self.class_weight_power, int | float) or not (
            0 <= self.class_weight_power <= 1
        ):
            raise ConfigError(
                f"train.class_weight_power: must be in [0, 1], got {self.class_weight_power!r}"
            )
        if not isinstance(self.distill, int | float) or not 0 <= self.distill < 1:
            raise ConfigError(f"train.distill: must be in [0, 1), got {self.distill!r}")
        if not isinstance(self.distill_augment, int | float) or not (
            0 <= self.distill_augment <= MAX_AUGMENT
        ):
            raise ConfigError(
                f"train.distill_augment: must be in [0, {MAX_AUGMENT}], "
                f"got {self.distill_augment!r}"
            )
        if self.distill_augment > 0 and self.model != "dnn":
            raise ConfigError(
                f"train.distill_augment: only dnn reads single rows to augment, got {self.model}"
            )
        if self.members > 1 and self.model != "dnn":
            raise ConfigError(f"train.members: only dnn averages sub-networks, got {self.model}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"train.dropout: must be in [0, 1), got {self.dropout!r}")
        if self.mapping is not None:
            _check_mapping(self.mapping)
        if self.padding not in ("none", "zeros"):
            raise ConfigError(f"train.padding: must be 'none' or 'zeros', got {self.padding!r}")
        if self.scaler not in SCALERS:
            raise ConfigError(f"train.scaler: must be one of {SCALERS}, got {self.scaler!r}")
        _check_partial(self)
        if not isinstance(self.cluster_timeout, int | float) or not (
            1 <= self.cluster_timeout <= 86_400
        ):
            raise ConfigError(
                f"train.cluster_timeout: must be 1..86400 seconds, got {self.cluster_timeout!r}"
            )
        if self.cluster_spec is not None and self.dataset != "features":
            raise ConfigError(
                "train.dataset: across workers (cluster_spec) training reads `features` "
                f"(a folder of `iotids features --out` recordings), not {self.dataset!r}"
            )
        if self.split == "by-file" and not self.test_files:
            raise ConfigError("train.test_files: a by-file split needs the test files named")

    def loader_options(self) -> dict[str, Any]:
        """The dataset options the user set (a loader rejects those it does not take)."""
        options: dict[str, Any] = {}
        if self.label_mode is not None:
            options["label_mode"] = self.label_mode
        if self.label_column is not None:
            options["label_column"] = self.label_column
        if self.drop_columns:
            options["drop_columns"] = list(self.drop_columns)
        if self.max_rows is not None:
            options["max_rows"] = self.max_rows
        if self.dataset in ("captures", "synthetic"):
            options["step"] = self.step
        if self.mapping is not None and self.dataset == "captures":
            options["mapping"] = self.mapping
        if self.part is not None:
            options["part"] = self.part
        return options


def _check_numbers(config: TrainConfig) -> None:
    """The keys the checks above leave: seeds, learning rate, patience, rows, step."""
    from agent.features.steps import StepSpec

    if not 0 <= config.seed <= MAX_SEED - (config.seeds - 1):
        raise ConfigError(
            f"train.seed: must be in 0..{MAX_SEED - config.seeds + 1} "
            f"(seeds = {config.seeds}), got {config.seed!r}"
        )
    if not math.isfinite(config.learning_rate) or config.learning_rate <= 0:
        raise ConfigError(f"train.learning_rate: must be > 0, got {config.learning_rate!r}")
    if not math.isfinite(config.onset_weight):
        raise ConfigError(f"train.onset_weight: must be finite, got {config.onset_weight!r}")
    if config.patience < 0:
        raise ConfigError(f"train.patience: must be >= 0, got {config.patience!r}")
    if config.max_rows is not None and config.max_rows < 1:
        raise ConfigError(f"train.max_rows: must be >= 1, got {config.max_rows!r}")
    try:
        StepSpec.parse(config.step)
    except ValueError as exc:
        raise ConfigError(f"train.step: {exc}") from None


def _check_partial(config: TrainConfig) -> None:
    """Padded copies need a padding model and the in-memory trainer."""
    share = config.partial_windows
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
        raise ConfigError(f"train.partial_windows: must be in [0, 1], got {share!r}")
    if share > 0 and config.padding != "zeros":
        raise ConfigError("train.partial_windows: needs padding = 'zeros' (the gateway pads then)")
    if share > 0 and (config.stream or config.dataset == "features"):
        raise ConfigError("train.partial_windows: only the in-memory trainer adds padded copies")
    share = config.transition_windows
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
        raise ConfigError(f"train.transition_windows: must be in [0, 1], got {share!r}")
    if share > 0 and (config.stream or config.dataset == "features"):
        raise ConfigError("train.transition_windows: only the in-memory trainer adds copies")


def _check_mapping(path: str) -> None:
    """A mapping file's families are checked before training, not after it."""
    from training.datasets.captures import read_rules
    from training.label_families import mapping_families

    if not Path(path).is_file():
        raise ConfigError(f"train.mapping: no such file {path!r}")
    try:
        mapping_families(path)
        read_rules(path)
    except ValueError as exc:
        raise ConfigError(f"train.mapping: {exc}") from None


def load_config(path: str | Path | None, overrides: dict[str, Any]) -> TrainConfig:
    """Values from the ``[train]`` table of a TOML file, then the flags that were given."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            data = config_loader.read_toml(path, MAX_CONFIG_BYTES)
        except config_loader.ConfigError as exc:
            raise ConfigError(f"train.config: {exc}") from None
        values = data.get("train", data)
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: [train] must be a table")
        unknown = set(data) - {"train"} if "train" in data else set()
        if unknown:
            raise ConfigError(f"{path}: unknown tables {sorted(unknown)} (only [train])")
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in fields(TrainConfig)}
    unknown_keys = set(values) - known
    if unknown_keys:
        raise ConfigError(f"train: unknown keys {sorted(unknown_keys)}")
    for key in ("dataset", "path", "model", "out"):
        if key not in values:
            raise ConfigError(f"train.{key}: required (flag --{key.replace('_', '-')})")
    # each value's type from the dataclass's hints (the agent's loader): one line naming the key
    try:
        return config_loader.build(TrainConfig, values, "train")
    except config_loader.ConfigError as exc:
        raise exc if isinstance(exc, ConfigError) else ConfigError(str(exc)) from None
