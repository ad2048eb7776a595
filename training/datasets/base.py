"""The Dataset every loader returns, and the table-reading helpers loaders share."""

from __future__ import annotations

import csv
import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.contract import MAX_NAME_CHARS
from agent.features.schema import FeatureSet
from agent.printable import printable

logger = logging.getLogger(__name__)

BENIGN_NAMES = ("benign", "normal", "0")


@dataclass
class Dataset:
    """Numeric rows with a label each; time-ordered steps per group when ``sequential``.

    ``x`` is (N, F) float32 after categorical encoding. For sequential data rows are time
    steps in order within each group (a capture file, a device), and windows must never
    cross a group boundary; for tabular data rows are independent samples.
    """

    kind: str
    name: str  # feature set name, e.g. "traffic", "nsl-kdd"
    columns: list[str]
    x: npt.NDArray[np.float32]
    label_names: npt.NDArray[np.str_]  # (N,) the class of each row
    sequential: bool = False
    groups: npt.NDArray[np.int64] | None = None  # (N,) group index; None: one group
    group_names: list[str] = field(default_factory=lambda: ["all"])
    encoders: dict[str, Any] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> rows dropped at load
    step: dict[str, Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)  # how to load the same way again
    # per group name: "packets", "seconds" (first to last packet) and "steps" of a recording,
    # so a class with too few windows can be explained with the step that would fit
    recordings: dict[str, dict[str, float]] = field(default_factory=dict)
    version: int = 1

    def __post_init__(self) -> None:
        if self.groups is None:
            self.groups = np.zeros(len(self.x), np.int64)
        if not len(self.x) == len(self.label_names) == len(self.groups):
            raise ValueError("x, label_names and groups differ in length")
        if self.x.ndim != 2 or self.x.shape[1] != len(self.columns):
            raise ValueError(f"x shape {self.x.shape} does not match {len(self.columns)} columns")

    @property
    def feature_set(self) -> FeatureSet:
        """The named, versioned column list whose schema id goes into the bundle."""
        return FeatureSet(self.name, self.version, tuple(self.columns))

    @property
    def labels(self) -> list[str]:
        """Class names, the benign class first, then alphabetical."""
        names = sorted(set(self.label_names.tolist()))
        benign = [n for n in names if n.lower() in BENIGN_NAMES]
        return benign + [n for n in names if n not in benign]

    @property
    def benign(self) -> str | None:
        """The benign / normal class name, when there is one."""
        first = self.labels[0] if len(self.label_names) else None
        return first if first is not None and first.lower() in BENIGN_NAMES else None

    def class_counts(self) -> dict[str, int]:
        """Rows per class."""
        return dict(Counter(self.label_names.tolist()))

    def drop_nonfinite(self) -> Dataset:
        """Rows with NaN / inf removed; the count goes into ``dropped['nonfinite']``."""
        ok = np.isfinite(self.x).all(axis=1)
        bad = int((~ok).sum())
        if bad:
            logger.info("dropped %d rows with NaN/inf values", bad)
            self.dropped["nonfinite"] = self.dropped.get("nonfinite", 0) + bad
            assert self.groups is not None
            self.x, self.label_names, self.groups = (
                self.x[ok],
                self.label_names[ok],
                self.groups[ok],
            )
        return self


def check_label(label: str) -> str:
    """``label`` as a class name, or ValueError naming it: a label reaches reports, plots, the
    bundle's manifest and the gateway's events, Home Assistant and the monitor, so it is
    printable (no newline or terminal escape), not blank, and within what a consumer of the
    gateway's events keeps of a name (``MAX_NAME_CHARS``)."""
    shown = printable(label, 60)
    if not label.strip():
        return _bad_label("a class with no name (an empty label)")
    if not label.isprintable():
        return _bad_label(f"label '{shown}' has control characters")
    if len(label) > MAX_NAME_CHARS:
        return _bad_label(f"label '{shown}' is {len(label)} characters")
    return label


def _bad_label(problem: str) -> str:
    raise ValueError(f"{problem}: a class name must be printable, 1..{MAX_NAME_CHARS} characters")


def parse_number(text: str) -> float:
    """A float from a CSV cell; ``0x``-prefixed hex integers too; NaN when it is neither."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    if text.lower().startswith("0x"):
        try:
            return float(int(text, 16))
        except ValueError:
            return float("nan")
    return float("nan")


@contextmanager
def reading_csv(path: Path) -> Iterator[None]:
    """A file that is not a readable UTF-8 CSV (a gzip, a field over csv's limit, a folder) is
    one ValueError line naming it, never a traceback."""
    try:
        yield
    except csv.Error as exc:
        raise ValueError(f"{path}: not a readable UTF-8 CSV ({exc})") from None
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{path}: not a readable UTF-8 CSV (not UTF-8 at byte {exc.start})"
        ) from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror or exc})") from None


def check_header(path: Path, header: Sequence[str]) -> list[str]:
    """``header`` stripped; a name twice would make two features (or labels) of one name."""
    names = [h.strip() for h in header]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"{path}: column {twice[0][:60]!r} appears twice in the header")
    return names


def read_rows(path: Path, header: bool = True) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a CSV file (UTF-8 with or without BOM, any newline style)."""
    with reading_csv(path), path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, skipinitialspace=True)
        head = next(reader, []) if header else []
        rows = list(reader)
    return check_header(path, head), rows


def csv_files(path: str | Path, pattern: str = "*.csv") -> list[Path]:
    """``path`` itself when it is a file, else its matching files in name order."""
    root = Path(path)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(
            f"--path {root}: no such file or folder; give the dataset's file or folder"
        )
    # only regular files: a FIFO named *.csv would block the read forever, a folder fail it
    files = sorted(f for f in root.glob(pattern) if f.is_file())
    if not files:
        raise FileNotFoundError(f"no {pattern} files in {root}")
    return files


def encode_categorical(
    name: str,
    values: Sequence[str],
    spec: dict[str, Any] | None,
    kind: str = "onehot",
) -> tuple[npt.NDArray[np.float32], list[str], dict[str, Any]]:
    """Encode one string column one-hot or ordinal; reuse ``spec`` when given (evaluation).

    Returns the (N, k) matrix, its column names and the spec to save. Unseen values give an
    all-zero one-hot row or ordinal -1, and are counted in the returned spec's ``unseen``.
    """
    cleaned = [v.strip() for v in values]
    if spec is None:
        spec = {"kind": kind, "values": sorted(set(cleaned))}
    vocab: list[str] = list(spec["values"])
    index = {v: i for i, v in enumerate(vocab)}
    codes = np.array([index.get(v, -1) for v in cleaned], dtype=np.int64)
    unseen = int((codes < 0).sum())
    if unseen:
        logger.warning("%s: %d values not seen in training", name, unseen)
    used = {**spec, "unseen": unseen}
    if spec["kind"] == "ordinal":
        return codes.astype(np.float32)[:, None], [name], used
    matrix = np.zeros((len(cleaned), len(vocab)), np.float32)
    rows = np.nonzero(codes >= 0)[0]
    matrix[rows, codes[rows]] = 1.0
    return matrix, [f"{name}={v}" for v in vocab], used


def numeric_matrix(
    rows: Iterable[Sequence[str]], indexes: Sequence[int]
) -> npt.NDArray[np.float32]:
    """The chosen columns of string rows as float32 (NaN where a cell is not a number)."""
    return np.array(
        [[parse_number(row[i]) for i in indexes] for row in rows], dtype=np.float64
    ).astype(np.float32)
