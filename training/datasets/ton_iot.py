"""TON_IoT telemetry CSVs: one device per file, rows in time order, blocks per attack type.

The Train_Test files are UTF-8 with a BOM, CRLF, padded ``time`` strings and text sensor
states (``temp_condition``, ``door_state``, ``light_status``...). Rows are subsampled
readings, not a continuous stream, so each row is one step: per sensor its value and its
change since the previous row. Rows come in contiguous blocks per attack type, so a split
must take time blocks (never shuffled rows).

Two artefacts of how the files were assembled give the label away and are kept from the
models: the same boolean is spelled ``true``/``false`` in normal rows and ``1``/``0`` in
attack rows (garage door ``sphone_signal``), so spellings are mapped to one encoding; and
normal rows are logged many per second while attack rows come about once a second, so the
rows' timestamps (their spacing, or anything derived from them) are never a feature.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from training.datasets.base import Dataset, csv_files, encode_categorical, parse_number, read_rows

logger = logging.getLogger(__name__)

META = ("date", "time", "ts", "label", "type")
LABEL_MODES = ("type", "binary")
# one spelling per boolean, whichever the row was written with
BOOLEAN_SPELLINGS = {"true": "1", "false": "0"}
REQUIRED = ("label", "type")


def _cell(text: str) -> str:
    """A sensor cell trimmed and lower-cased, a spelled-out boolean as its 1 / 0."""
    cleaned = text.strip().lower()
    return BOOLEAN_SPELLINGS.get(cleaned, cleaned)


def _sensor_values(
    name: str, cells: list[str], spec: dict[str, Any] | None
) -> tuple[npt.NDArray[np.float64], dict[str, Any]]:
    """A sensor column as numbers: numeric as read, text states ordinal-encoded."""
    cells = [_cell(c) for c in cells]
    numbers = np.array([parse_number(c) for c in cells])
    if (spec is None and np.isfinite(numbers).mean() >= 0.99) or spec == {"kind": "number"}:
        return numbers, {"kind": "number"}
    matrix, _, used = encode_categorical(name, cells, spec, "ordinal")
    return matrix[:, 0].astype(np.float64), used


def _device(
    header: list[str], rows: list[list[str]], encoders: dict[str, Any], label_mode: str
) -> tuple[dict[str, npt.NDArray[np.float64]], npt.NDArray[np.str_]]:
    """Per-column step features and labels of one device file (encoders updated in place)."""
    col = {h: i for i, h in enumerate(header)}
    features: dict[str, npt.NDArray[np.float64]] = {}
    for name in header:
        if name in META:
            continue
        values, encoders[name] = _sensor_values(
            name, [r[col[name]] for r in rows], encoders.get(name)
        )
        features[f"{name}.value"] = values
        features[f"{name}.delta"] = np.concatenate(([0.0], np.diff(values)))
    if label_mode == "binary":
        labels = ["normal" if r[col["label"]].strip() == "0" else "attack" for r in rows]
    else:
        labels = [r[col["type"]].strip().lower() for r in rows]
    return features, np.array(labels, np.str_)


def _read(file: Path, max_rows: int | None) -> tuple[list[str], list[list[str]], int]:
    """Header, well-formed rows and the count of shifted rows; a file that is not a TON_IoT
    telemetry table is refused with one line naming it (ValueError), never a traceback."""
    header, rows = read_rows(file)
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        raise ValueError(f"{file}: no {', '.join(missing)} column (header {header[:8]})")
    good = [r for r in rows if len(r) == len(header)][:max_rows]
    if not good:
        raise ValueError(f"{file}: no row with the header's {len(header)} fields")
    return header, good, sum(1 for r in rows if r and len(r) != len(header))


def load(
    path: str,
    label_mode: str = "type",
    max_rows: int | None = None,
    encoders: dict[str, Any] | None = None,
) -> Dataset:
    """One device file or a folder of several; columns are the union (0 where absent)."""
    if label_mode not in LABEL_MODES:
        raise ValueError(f"label_mode: must be one of {LABEL_MODES}, got {label_mode!r}")
    used: dict[str, Any] = dict(encoders or {})
    devices, names, shifted = [], [], 0
    for file in csv_files(path):
        header, good, bad = _read(file, max_rows)
        shifted += bad
        devices.append(_device(header, good, used, label_mode))
        names.append(file.stem.removeprefix("Train_Test_IoT_").lower())
    columns = sorted({c for features, _ in devices for c in features})
    if encoders is not None and "columns" in encoders:
        columns = list(encoders["columns"])
    x = np.concatenate(
        [np.stack([f.get(c, np.zeros(len(y))) for c in columns], axis=1) for f, y in devices]
    ).astype(np.float32)
    used["columns"] = columns
    dataset = Dataset(
        kind="ton-iot",
        name="ton-iot",
        columns=columns,
        x=x,
        label_names=np.concatenate([y for _, y in devices]),
        sequential=True,
        groups=np.concatenate([np.full(len(y), g, np.int64) for g, (_, y) in enumerate(devices)]),
        group_names=names,
        encoders=used,
        dropped={"shifted_rows": shifted} if shifted else {},
        options={"label_mode": label_mode},
    )
    return dataset.drop_nonfinite()
