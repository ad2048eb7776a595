"""Dataset loaders behind one interface: ``load(kind, path, **options) -> Dataset``.

Each kind lives in its own module and is imported only when asked for, so a loader's
dependencies never load for the others.
"""

from __future__ import annotations

import importlib
from typing import Any

from training.datasets.base import Dataset

LOADERS: dict[str, str] = {
    "ciciot2023": "training.datasets.ciciot2023:load",
    "ton-iot": "training.datasets.ton_iot:load",
    "n-baiot": "training.datasets.n_baiot:load",
    "nsl-kdd": "training.datasets.nsl_kdd:load",
    "csv": "training.datasets.table:load",
    "captures": "training.datasets.captures:load",
    "synthetic": "training.datasets.synthetic:load",
}


def load(kind: str, path: str, **options: Any) -> Dataset:
    """Load ``path`` as a dataset of ``kind``; an unknown kind lists the valid ones."""
    if kind not in LOADERS:
        raise ValueError(f"unknown dataset kind {kind!r} (valid: {', '.join(sorted(LOADERS))})")
    module_name, _, func = LOADERS[kind].partition(":")
    loader = getattr(importlib.import_module(module_name), func)
    dataset: Dataset = loader(path, **options)
    return dataset


__all__ = ["LOADERS", "Dataset", "load"]
