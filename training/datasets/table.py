"""Any CSV table: a label column, optional dropped columns, tolerant of messy rows.

Rows whose field count differs from the header (shifted by a stray delimiter) are dropped
and counted; ``0x`` hex cells are read as integers; text columns with few distinct values
are ordinal-encoded and the rest are dropped and reported.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from training.datasets.base import (
    Dataset,
    check_header,
    csv_files,
    encode_categorical,
    numeric_matrix,
    parse_number,
    read_rows,
    reading_csv,
)

logger = logging.getLogger(__name__)

MAX_CATEGORIES = 32


def _is_numeric(values: Sequence[str]) -> bool:
    """True when at least 99 % of the non-empty cells read as numbers."""
    cells = [v for v in values if v.strip()]
    good = sum(1 for v in cells if not math.isnan(parse_number(v)))
    return not cells or good >= 0.99 * len(cells)


def load(
    path: str,
    label_column: str = "label",
    drop_columns: Sequence[str] = (),
    max_rows: int | None = None,
    encoders: dict[str, Any] | None = None,
) -> Dataset:
    """Every CSV under ``path`` (same header) as independent rows labelled by ``label_column``."""
    header: list[str] = []
    rows: list[list[str]] = []
    shifted = 0
    for file in csv_files(path):
        head, body = read_rows(file)
        if header and head != header:
            raise ValueError(f"{file.name}: header differs from the first file's")
        header = head
        rows += [r for r in body if len(r) == len(head)]
        shifted += sum(1 for r in body if r and len(r) != len(head))
    if label_column not in header:
        raise ValueError(f"label_column: {label_column!r} not in {header}")
    if not rows:
        raise ValueError(f"--path {path}: no row with the header's {len(header)} fields")
    unknown = set(drop_columns) - set(header)
    if unknown:
        raise ValueError(f"drop_columns: {sorted(unknown)} not in the header")
    rows = rows[:max_rows] if max_rows else rows
    dropped: dict[str, int] = {"shifted_rows": shifted} if shifted else {}
    parts, columns, used = [], [], {}
    for i, name in enumerate(header):
        if name == label_column or name in drop_columns:
            continue
        if encoders is not None and name not in encoders:
            continue  # evaluating: only the columns the model was trained on
        cells = [r[i] for r in rows]
        spec = encoders.get(name) if encoders is not None else None
        if spec == {"kind": "number"} or (spec is None and _is_numeric(cells)):
            parts.append(numeric_matrix(rows, [i]).reshape(len(rows), 1))
            columns.append(name)
            used[name] = {"kind": "number"}
        elif spec is not None or len(set(cells)) <= MAX_CATEGORIES:
            matrix, names, used[name] = encode_categorical(name, cells, spec, "ordinal")
            parts.append(matrix)
            columns += names
        else:
            logger.warning("dropped text column %s (%d distinct values)", name, len(set(cells)))
            dropped[f"column:{name}"] = len(rows)
    if shifted:
        logger.warning("dropped %d rows whose field count differs from the header", shifted)
    dataset = Dataset(
        kind="csv",
        name="csv",
        columns=columns,
        x=np.concatenate(parts, axis=1) if parts else np.zeros((len(rows), 0), np.float32),
        label_names=np.array([r[header.index(label_column)].strip() for r in rows], np.str_),
        encoders=used,
        dropped=dropped,
        options={"label_column": label_column, "drop_columns": list(drop_columns)},
    )
    return dataset.drop_nonfinite()


def chunks(
    path: str,
    label_column: str = "label",
    drop_columns: Sequence[str] = (),
    chunk_rows: int = 50_000,
) -> Iterator[tuple[list[str], npt.NDArray[np.float32], npt.NDArray[np.str_], int]]:
    """Stream ``(numeric columns, x, labels, shifted rows)`` chunks; text cells become NaN."""
    import csv

    for file in csv_files(path):
        with reading_csv(file), file.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, skipinitialspace=True)
            header = check_header(file, next(reader, []))
            if label_column not in header:
                raise ValueError(f"label_column: {label_column!r} not in {header}")
            keep = [i for i, h in enumerate(header) if h != label_column and h not in drop_columns]
            target = header.index(label_column)
            batch: list[list[str]] = []
            shifted = 0
            for row in reader:
                if len(row) != len(header):
                    shifted += bool(row)
                    continue
                batch.append(row)
                if len(batch) == chunk_rows:
                    yield _chunk(header, keep, target, batch, shifted)
                    batch, shifted = [], 0
            if batch or shifted:
                yield _chunk(header, keep, target, batch, shifted)


def _chunk(
    header: list[str], keep: list[int], target: int, rows: list[list[str]], shifted: int
) -> tuple[list[str], npt.NDArray[np.float32], npt.NDArray[np.str_], int]:
    """One streamed chunk of numeric features and labels."""
    x = numeric_matrix(rows, keep).reshape(len(rows), len(keep))
    labels = np.array([r[target].strip() for r in rows], np.str_)
    return [header[i] for i in keep], x, labels, shifted
