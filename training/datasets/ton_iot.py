"""TON_IoT telemetry CSVs: one device per file, rows in time order, blocks per attack type.

The Train_Test files are UTF-8 with a BOM, CRLF, padded ``time`` strings and text sensor
states (``temp_condition``, ``door_state``, ``light_status``...). Rows are subsampled
readings, not a continuous stream, so each row is one step: per sensor its value and its
change since the previous row, plus the seconds since that row. Rows come in contiguous
blocks per attack type, so a split must take time blocks (never shuffled rows).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from training.datasets.base import Dataset, csv_files, encode_categorical, parse_number, read_rows

logger = logging.getLogger(__name__)

META = ("date", "time", "ts", "label", "type")
LABEL_MODES = ("type", "binary")
MAX_INTERVAL_S = 3600.0


def _seconds(date: str, time: str) -> float:
    """Epoch seconds of a ``25-Apr-19`` date and a ``19:19:40`` time; NaN when unreadable."""
    try:
        return datetime.strptime(f"{date.strip()} {time.strip()}", "%d-%b-%y %H:%M:%S").timestamp()
    except ValueError:
        return float("nan")


def _sensor_values(
    name: str, cells: list[str], spec: dict[str, Any] | None
) -> tuple[npt.NDArray[np.float64], dict[str, Any]]:
    """A sensor column as numbers: numeric as read, text states ordinal-encoded."""
    numbers = np.array([parse_number(c) for c in cells])
    if (spec is None and np.isfinite(numbers).mean() >= 0.99) or spec == {"kind": "number"}:
        return numbers, {"kind": "number"}
    matrix, _, used = encode_categorical(name, [c.lower() for c in cells], spec, "ordinal")
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
    seconds = np.array([_seconds(r[col["date"]], r[col["time"]]) for r in rows])
    interval = np.concatenate(([0.0], np.diff(seconds)))
    features["interval_s"] = np.clip(np.nan_to_num(interval), 0.0, MAX_INTERVAL_S)
    if label_mode == "binary":
        labels = ["normal" if r[col["label"]].strip() == "0" else "attack" for r in rows]
    else:
        labels = [r[col["type"]].strip().lower() for r in rows]
    return features, np.array(labels, np.str_)


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
        header, rows = read_rows(file)
        good = [r for r in rows if len(r) == len(header)][:max_rows]
        shifted += sum(1 for r in rows if r and len(r) != len(header))
        devices.append(_device(header, good, used, label_mode))
        names.append(file.stem.removeprefix("Train_Test_IoT_").lower())
    columns = sorted({c for features, _ in devices for c in features if c != "interval_s"})
    columns.append("interval_s")
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
