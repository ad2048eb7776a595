"""CICIoT2023 CSVs (39 / 46 features): ready family / binary columns, or 34 labels mapped.

The 34 attack labels map to the paper's families (Neto et al. 2023); the shared sample
carries its own ``label_multiclass`` (10 families) and ``label_binary`` columns instead.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from training.datasets.base import Dataset, check_header, csv_files, numeric_matrix, reading_csv

logger = logging.getLogger(__name__)

LABEL_COLUMNS = ("label", "label_multiclass", "label_binary")
LABEL_MODES = ("family", "binary", "raw")

# 34-class label prefix -> family (the paper's 8-class grouping).
_FAMILY_PREFIX = (
    ("BenignTraffic", "Benign"),
    ("DDoS", "DDoS"),
    ("DoS", "DoS"),
    ("Mirai", "Mirai"),
    ("Recon", "Recon"),
    ("VulnerabilityScan", "Recon"),
    ("MITM", "Spoofing"),
    ("DNS_Spoofing", "Spoofing"),
    ("DictionaryBruteForce", "BruteForce"),
)
_WEB = ("BrowserHijacking", "XSS", "Uploading_Attack", "SqlInjection", "CommandInjection")


def family_of(label: str) -> str:
    """The family of a 34-class CICIoT2023 label (Backdoor_Malware and uploads are Web)."""
    for prefix, family in _FAMILY_PREFIX:
        if label.startswith(prefix):
            return family
    if label in _WEB or label == "Backdoor_Malware":
        return "Web"
    return label


def _label_of(row: dict[str, str], mode: str) -> str:
    """A row's class under ``mode`` from whichever label columns the file has."""
    if mode == "binary":
        if "label_binary" in row:
            return "Benign" if row["label_binary"].strip() in ("0", "0.0") else "Attack"
        return "Benign" if family_of(row["label"].strip()) == "Benign" else "Attack"
    if "label_multiclass" in row and mode == "family":
        return row["label_multiclass"].strip()
    raw = row["label"].strip() if "label" in row else row["label_multiclass"].strip()
    return raw if mode == "raw" else family_of(raw)


def chunks(
    path: str | Path, label_mode: str = "family", chunk_rows: int = 50_000
) -> Iterator[tuple[list[str], npt.NDArray[np.float32], npt.NDArray[np.str_], int]]:
    """Stream ``(feature columns, x, labels, shifted rows)`` chunks without loading the files."""
    import csv

    if label_mode not in LABEL_MODES:
        raise ValueError(f"label_mode: must be one of {LABEL_MODES}, got {label_mode!r}")
    for file in csv_files(path):
        with reading_csv(file), file.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = check_header(file, next(reader, []))
            features = [i for i, h in enumerate(header) if h not in LABEL_COLUMNS]
            names = [header[i] for i in features]
            batch: list[list[str]] = []
            shifted = 0
            for row in reader:
                if len(row) != len(header):
                    shifted += bool(row)
                    continue
                batch.append(row)
                if len(batch) == chunk_rows:
                    yield names, *_convert(header, features, batch, label_mode), shifted
                    batch, shifted = [], 0
            if batch or shifted:
                yield names, *_convert(header, features, batch, label_mode), shifted


def _convert(
    header: list[str], features: list[int], rows: list[list[str]], mode: str
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.str_]]:
    """Feature matrix and class names of a batch of rows."""
    x = numeric_matrix(rows, features).reshape(len(rows), len(features))
    labels = np.array([_label_of(dict(zip(header, r, strict=True)), mode) for r in rows], np.str_)
    return x, labels


def load(
    path: str,
    label_mode: str = "family",
    max_rows: int | None = None,
    encoders: dict[str, Any] | None = None,
) -> Dataset:
    """Every CSV under ``path`` as one table of independent rows (they are shuffled windows)."""
    del encoders  # all CICIoT2023 features are numeric
    names: list[str] = []
    xs, ys, shifted = [], [], 0
    total = 0
    for chunk_names, x, y, bad in chunks(path, label_mode):
        names = chunk_names
        xs.append(x)
        ys.append(y)
        shifted += bad
        total += len(y)
        if max_rows and total >= max_rows:
            break
    x_all = np.concatenate(xs)[:max_rows] if xs else np.zeros((0, len(names)), np.float32)
    y_all = np.concatenate(ys)[:max_rows] if ys else np.zeros(0, np.str_)
    dataset = Dataset(
        kind="ciciot2023",
        name="ciciot2023",
        columns=names,
        x=x_all,
        label_names=y_all,
        dropped={"shifted_rows": shifted} if shifted else {},
        options={"label_mode": label_mode},
    )
    return dataset.drop_nonfinite()


__all__ = ["chunks", "family_of", "load"]
