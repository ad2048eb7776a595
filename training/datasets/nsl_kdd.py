"""NSL-KDD: headerless 43-field rows, three categorical columns, the usual 5-category map."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from training.datasets.base import Dataset, csv_files, encode_categorical, numeric_matrix, read_rows

logger = logging.getLogger(__name__)

COLUMNS = [
    "duration",
    "protocol_type",
    "service",
    "flag",
    "src_bytes",
    "dst_bytes",
    "land",
    "wrong_fragment",
    "urgent",
    "hot",
    "num_failed_logins",
    "logged_in",
    "num_compromised",
    "root_shell",
    "su_attempted",
    "num_root",
    "num_file_creations",
    "num_shells",
    "num_access_files",
    "num_outbound_cmds",
    "is_host_login",
    "is_guest_login",
    "count",
    "srv_count",
    "serror_rate",
    "srv_serror_rate",
    "rerror_rate",
    "srv_rerror_rate",
    "same_srv_rate",
    "diff_srv_rate",
    "srv_diff_host_rate",
    "dst_host_count",
    "dst_host_srv_count",
    "dst_host_same_srv_rate",
    "dst_host_diff_srv_rate",
    "dst_host_same_src_port_rate",
    "dst_host_srv_diff_host_rate",
    "dst_host_serror_rate",
    "dst_host_srv_serror_rate",
    "dst_host_rerror_rate",
    "dst_host_srv_rerror_rate",
    "label",
    "difficulty",
]
CATEGORICAL = ("protocol_type", "service", "flag")

# Tavallaee et al. 2009's grouping, including the attacks that only occur in KDDTest+.
_GROUPS = {
    "DoS": "back land neptune pod smurf teardrop apache2 udpstorm processtable mailbomb worm",
    "Probe": "satan ipsweep nmap portsweep mscan saint",
    "R2L": "guess_passwd ftp_write imap phf multihop warezmaster warezclient spy xlock xsnoop "
    "snmpguess snmpgetattack httptunnel sendmail named",
    "U2R": "buffer_overflow loadmodule rootkit perl sqlattack xterm ps",
}
CATEGORY = {attack: group for group, names in _GROUPS.items() for attack in names.split()}
LABEL_MODES = ("category", "binary", "attack")


def label_of(attack: str, mode: str) -> str:
    """The class of a raw NSL-KDD label under ``mode`` (category, binary or attack)."""
    if attack == "normal":
        return "normal"
    if mode == "binary":
        return "attack"
    if mode == "attack":
        return attack
    return CATEGORY.get(attack, "unknown")


def load(
    path: str,
    label_mode: str = "category",
    encoders: dict[str, Any] | None = None,
    max_rows: int | None = None,
) -> Dataset:
    """NSL-KDD rows with protocol_type / service / flag one-hot encoded."""
    if label_mode not in LABEL_MODES:
        raise ValueError(f"label_mode: must be one of {LABEL_MODES}, got {label_mode!r}")
    rows: list[list[str]] = []
    shifted = 0
    for file in csv_files(path, "*.txt"):
        for row in read_rows(file, header=False)[1]:
            if len(row) == len(COLUMNS):
                rows.append(row)
            elif row:
                shifted += 1
    rows = rows[:max_rows] if max_rows else rows
    numeric = [i for i, c in enumerate(COLUMNS[:-2]) if c not in CATEGORICAL]
    parts = [numeric_matrix(rows, numeric)]
    columns = [COLUMNS[i] for i in numeric]
    used: dict[str, Any] = {}
    for name in CATEGORICAL:
        i = COLUMNS.index(name)
        spec = (encoders or {}).get(name)
        matrix, names, used[name] = encode_categorical(name, [r[i] for r in rows], spec)
        parts.append(matrix)
        columns += names
    labels = np.array([label_of(r[-2].strip(), label_mode) for r in rows], dtype=np.str_)
    dataset = Dataset(
        kind="nsl-kdd",
        name="nsl-kdd",
        columns=columns,
        x=np.concatenate(parts, axis=1),
        label_names=labels,
        encoders=used,
        dropped={"shifted_rows": shifted} if shifted else {},
        options={"label_mode": label_mode},
    )
    return dataset.drop_nonfinite()
