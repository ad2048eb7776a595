"""N-BaIoT: 115 AfterImage features per packet, one class per file named after it.

Rows of one file are consecutive packets of one device, so the set is time-ordered per
file (``sequential``): splits take contiguous blocks, never shuffled rows.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from training.datasets.base import Dataset, csv_files, numeric_matrix, read_rows

LABEL_MODES = ("attack", "binary")


def class_of(file: Path, mode: str = "attack") -> str:
    """``benign_traffic.csv`` -> benign; ``1.mirai.udp.csv`` -> mirai.udp; else the stem."""
    stem = re.sub(r"^\d+\.", "", file.stem)
    if "benign" in stem.lower():
        return "benign"
    return "attack" if mode == "binary" else stem


def load(
    path: str,
    label_mode: str = "attack",
    max_rows: int | None = None,
    encoders: dict[str, Any] | None = None,
) -> Dataset:
    """Every CSV under ``path``; each file is one group and one class."""
    del encoders  # all N-BaIoT features are numeric
    if label_mode not in LABEL_MODES:
        raise ValueError(f"label_mode: must be one of {LABEL_MODES}, got {label_mode!r}")
    columns: list[str] = []
    xs, ys, gs, names = [], [], [], []
    shifted = 0
    for g, file in enumerate(csv_files(path)):
        header, rows = read_rows(file)
        if columns and header != columns:
            raise ValueError(f"{file.name}: columns differ from the first file's")
        columns = header
        good = [r for r in rows if len(r) == len(header)][:max_rows]
        shifted += sum(1 for r in rows if r and len(r) != len(header))
        xs.append(numeric_matrix(good, range(len(header))).reshape(len(good), len(header)))
        ys.append(np.full(len(good), class_of(file, label_mode)))
        gs.append(np.full(len(good), g, np.int64))
        names.append(file.stem)
    dataset = Dataset(
        kind="n-baiot",
        name="n-baiot",
        columns=columns,
        x=np.concatenate(xs),
        label_names=np.concatenate(ys).astype(np.str_),
        sequential=True,
        groups=np.concatenate(gs),
        group_names=names,
        dropped={"shifted_rows": shifted} if shifted else {},
        options={"label_mode": label_mode},
    )
    return dataset.drop_nonfinite()
